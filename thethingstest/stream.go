package thethingstest

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// maxQueue is how many frames may wait for a slow subscriber; a subscriber
// that falls further behind is disconnected so writers never block.
const maxQueue = 256

// maxKeepAlive caps the keepAlive parameter (larger values are clamped).
const maxKeepAlive = 24 * time.Hour

var (
	frameSubscribed = []byte(`{"status":"success","message":"subscribed"}`)
	frameKeepAlive  = []byte(`{}`)
)

// subscription is one open stream. Frames are shared, immutable slices; the
// queue grows only as needed, so an idle subscription costs little.
type subscription struct {
	mu       sync.Mutex
	queue    [][]byte
	overflow bool
	notify   chan struct{} // capacity 1
}

func (sub *subscription) push(frame []byte) {
	sub.mu.Lock()
	if len(sub.queue) >= maxQueue {
		sub.overflow = true
	} else {
		sub.queue = append(sub.queue, frame)
	}
	sub.mu.Unlock()
	select {
	case sub.notify <- struct{}{}:
	default:
	}
}

// take moves the queued frames into dst.
func (sub *subscription) take(dst [][]byte) ([][]byte, bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	dst = append(dst[:0], sub.queue...)
	clear(sub.queue)
	if cap(sub.queue) > 16 {
		sub.queue = nil
	} else {
		sub.queue = sub.queue[:0]
	}
	return dst, sub.overflow
}

func (th *thing) broadcast(frame []byte) {
	th.subsMu.Lock()
	for sub := range th.subs {
		sub.push(frame)
	}
	th.subsMu.Unlock()
}

// handleSubscribe serves GET /v2/things/{token}: a chunked stream of JSON
// frames, one chunk each.
func (s *Server) handleSubscribe(w http.ResponseWriter, r *http.Request, token string) {
	f := s.Faults()
	s.sleep(r, f.Latency)
	th := s.thing(token)
	if th == nil {
		writeDocError(w, http.StatusNotFound, fmt.Sprintf("Thing with thing token '%s' not found.", token))
		return
	}
	keepAlive := s.cfg.defaultKeepAlive
	if v, ok := r.URL.Query()["keepAlive"]; ok {
		ms, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil || ms <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid keepAlive %s: milliseconds > 0 expected", quoted(v[0])))
			return
		}
		keepAlive = time.Duration(min(ms, maxKeepAlive.Milliseconds())) * time.Millisecond
	}

	sub := &subscription{notify: make(chan struct{}, 1)}
	th.subsMu.Lock()
	th.subs[sub] = struct{}{}
	th.subsMu.Unlock()
	s.openSubs.Add(1)
	defer func() {
		th.subsMu.Lock()
		delete(th.subs, sub)
		th.subsMu.Unlock()
		s.openSubs.Add(-1)
	}()

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	st := streamWriter{w: w, rc: http.NewResponseController(w)}
	if !st.emit(s.Faults(), frameSubscribed) {
		return
	}

	ticker := time.NewTicker(keepAlive)
	defer ticker.Stop()
	var cut <-chan time.Time
	if f.StreamCutAfter > 0 {
		t := time.NewTimer(f.StreamCutAfter)
		defer t.Stop()
		cut = t.C
	}
	defer st.stopTimer()
	var frames [][]byte
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			st.flush()
			return
		case <-cut:
			st.abort()
			return
		case <-ticker.C:
			if ff := s.Faults(); !ff.StopKeepAlives {
				if !st.emit(ff, frameKeepAlive) {
					return
				}
			}
		case <-st.flushC:
			st.flushC = nil
			if !st.flush() {
				return
			}
		case <-sub.notify:
			var overflow bool
			frames, overflow = sub.take(frames)
			ff := s.Faults()
			for _, fr := range frames {
				if !st.emit(ff, fr) {
					return
				}
			}
			clear(frames)
			if overflow {
				st.abort()
				return
			}
		}
	}
}

// streamWriter writes frames to a subscription stream.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	pending []byte // coalesced frames not yet written (CoalesceFrames)
	frames  int    // number of frames in pending
	timer   *time.Timer
	flushC  <-chan time.Time
}

// emit writes one frame according to the stream faults; false means the
// client is gone.
func (st *streamWriter) emit(f Faults, frame []byte) bool {
	switch {
	case f.SplitFrames:
		if !st.flush() {
			return false
		}
		for i := range frame {
			if _, err := st.w.Write(frame[i : i+1]); err != nil {
				return false
			}
			if st.rc.Flush() != nil {
				return false
			}
		}
		return true
	case f.CoalesceFrames:
		// Frames are collected and written with one Write, so a chunk
		// always holds whole frames.
		st.pending = append(st.pending, frame...)
		st.frames++
		if st.frames >= coalesceFrames {
			return st.flush()
		}
		if st.flushC == nil {
			if st.timer == nil {
				st.timer = time.NewTimer(coalesceInterval)
			} else {
				st.timer.Reset(coalesceInterval)
			}
			st.flushC = st.timer.C
		}
		return true
	default:
		if len(st.pending) > 0 && !st.flush() {
			return false
		}
		if _, err := st.w.Write(frame); err != nil {
			return false
		}
		return st.rc.Flush() == nil
	}
}

// flush writes the coalesced frames, if any, as one chunk.
func (st *streamWriter) flush() bool {
	if st.timer != nil {
		st.timer.Stop()
		st.flushC = nil
	}
	if len(st.pending) == 0 {
		return true
	}
	_, err := st.w.Write(st.pending)
	if cap(st.pending) > 64<<10 {
		st.pending = nil
	} else {
		st.pending = st.pending[:0]
	}
	st.frames = 0
	return err == nil && st.rc.Flush() == nil
}

func (st *streamWriter) stopTimer() {
	if st.timer != nil {
		st.timer.Stop()
	}
}

// abort ends the stream abruptly: what was written is flushed, then the
// connection is closed without the terminating chunk.
func (st *streamWriter) abort() {
	_ = st.rc.Flush()
	conn, _, err := st.rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
