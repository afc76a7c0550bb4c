package thethings

import (
	"context"
	"slices"
	"time"

	"github.com/thethings-go/thethings/internal/transport"
)

// maxPerMilli is how many values of one key the writer stamps with the same
// millisecond: reading back a span with more than a page of values at one
// millisecond could not get past them.
const maxPerMilli = 100

// stamp is the last millisecond given to a key and the values (as their
// canonical JSON) that got it.
type stamp struct {
	ms   int64
	vals []string
}

// stamped is what Add learned of its values' stamps: the Datetime of each
// (nil: every value has its own), and those that wait for the platform's
// clock, by index.
type stamped struct {
	times []time.Time
	wait  []waitStamp
}

// waitStamp is a value that waits for the platform's clock: its sequence
// number in the buffer (its index in its Add until queued), its identity,
// when it was added (on the monotonic clock), and its stamp once settled.
type waitStamp struct {
	seq     int64
	key, id string
	at      time.Time
	ms      int64
	settled bool
}

// clockNow is the millisecond the writer stamps a value added now with:
// the device's clock, or the platform's when the device's reads before
// 2025 or WithPlatformClock says so; ok is false while the platform's
// clock is needed and not known yet.
func (w *Writer) clockNow() (ms int64, ok bool) {
	if !w.c.platformAlways {
		if t := w.c.now(); !t.Before(minPlausible) {
			return t.UnixMilli(), true
		}
	}
	t, ok := w.c.clock.now()
	return t.UnixMilli(), ok
}

// needsPlatformClock reports whether the writer stamps on the platform's
// clock.
func (w *Writer) needsPlatformClock() bool {
	return w.c.platformAlways || w.c.now().Before(minPlausible)
}

// stamps returns the Datetime of each value, or nil if every value has its
// own: a value's own, or the clock's now (see clockNow; UTC, milliseconds),
// moved on as stampAt says. Values for which the clock is not known yet,
// or that would overtake values still waiting for it, are returned in
// wait: their Datetime stays zero, in memory and in a spool, until the
// writer stamps them before they are sent (applyStamps). A spool read by a
// later writer (after a restart) holds them undated: their time is lost
// with the monotonic clock they were measured on, so they go out without
// a Datetime, for the platform to stamp.
func (w *Writer) stamps(values []Value) stamped {
	// Only a value dated at or after the latest clock reading (every one,
	// until the clock was read) can be twinned by a later stamp.
	undated, ahead, seen := false, false, w.seen.Load()
	for i := range values {
		t := &values[i].Datetime
		if t.IsZero() {
			undated = true
			break
		}
		ahead = ahead || t.UnixMilli() >= seen
	}
	if !undated && !ahead {
		return stamped{} // no stamp to give, none that a later one could twin
	}
	now, ok := w.clockNow()
	if ok {
		w.seen.Store(max(w.seen.Load(), now))
	}
	w.stampMu.Lock()
	defer w.stampMu.Unlock()
	w.noteDated(values, now, ok)
	if !undated {
		return stamped{} // every value has its own: nothing to allocate
	}
	ok = ok && w.deferred.Load() == 0
	var st stamped
	st.times = make([]time.Time, len(values))
	for i := range values {
		if !values[i].Datetime.IsZero() {
			st.times[i] = values[i].Datetime
			continue
		}
		id, _ := identOf("", time.Time{}, values[i].Value) // validated: no error
		if !ok {
			st.wait = append(st.wait, waitStamp{seq: int64(i), key: values[i].Key, id: id.value, at: time.Now()})
			continue
		}
		st.times[i] = time.UnixMilli(w.stampAt(values[i].Key, id.value, now)).UTC()
	}
	if len(w.last) > 10000 && ok {
		// Many keys: forget those stamped in the past, which the clock
		// cannot give again (unless it jumps back).
		for k, st := range w.last {
			if st.ms < now {
				delete(w.last, k)
			}
		}
	}
	return st
}

// noteDated remembers the values the caller dated at or after now (or
// every one, while the clock is unknown), so that no stamp twins them.
// w.stampMu is held.
func (w *Writer) noteDated(values []Value, now int64, ok bool) {
	for i := range values {
		v := &values[i]
		if v.Datetime.IsZero() || ok && v.Datetime.UnixMilli() < now {
			continue
		}
		id, err := identOf(v.Key, v.Datetime, v.Value)
		if err != nil {
			continue
		}
		if w.ahead == nil {
			w.ahead = map[ident]int{}
		}
		w.ahead[id]++
	}
	if len(w.ahead) > 1000 && ok && w.deferred.Load() == 0 {
		for id := range w.ahead {
			if id.ms < now {
				delete(w.ahead, id)
			}
		}
	}
}

// stampAt gives the value id of key a millisecond at or after ms: ms, or
// later when the key already has maxPerMilli values, or one equal to this
// value, at the last millisecond stamped, or when the caller dated an equal
// value at that millisecond. Two identical values of a key never share a
// stamp: a read back could not tell them apart. w.stampMu is held.
func (w *Writer) stampAt(key, id string, ms int64) int64 {
	if w.last == nil {
		w.last = map[string]stamp{}
	}
	st := w.last[key]
	switch {
	case st.ms < ms:
		st = stamp{ms: ms, vals: st.vals[:0]}
	case len(st.vals) >= maxPerMilli || slices.Contains(st.vals, id):
		st = stamp{ms: st.ms + 1, vals: st.vals[:0]}
	}
	for w.ahead[ident{key: key, ms: st.ms, value: id}] > 0 {
		st = stamp{ms: st.ms + 1, vals: st.vals[:0]}
	}
	st.vals = append(st.vals, id)
	w.last[key] = st
	return st.ms
}

// queueLocked queues the values of an Add of n values that wait for the
// platform's clock, numbering them. w.mu is held.
func (w *Writer) queueLocked(wait []waitStamp, n int) {
	for _, ws := range wait {
		ws.seq += w.written
		w.waiting = append(w.waiting, ws)
	}
	w.deferred.Add(int64(len(wait)))
	w.written += int64(n)
}

// settle stamps the values waiting for the platform's clock, once it is
// known: each at the platform's time when it was added, measured back on
// the monotonic clock. The first time the writer needs the platform's
// clock, it asks for it to the millisecond (a Date header has whole
// seconds). It returns an error while values wait and the platform's
// clock cannot be learned.
func (w *Writer) settle() error {
	waiting := w.deferred.Load() > 0
	if !w.refined && !w.cfg.serverTime && !w.c.clock.precise.Load() && w.needsPlatformClock() {
		if _, known := w.c.clock.now(); known || waiting {
			_, err := w.c.ServerTime(w.ctx)
			if _, ok := w.c.clock.now(); !ok {
				if err == nil {
					err = errorf("thethings: the platform's clock is unknown")
				}
				return errorf("thethings: values wait for the platform's clock: %w", err)
			}
			w.refined = true
		}
	}
	if !waiting {
		return nil
	}
	pnow, _ := w.c.clock.now()
	mono := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stampMu.Lock()
	defer w.stampMu.Unlock()
	n := 0
	for i := range w.waiting {
		ws := &w.waiting[i]
		if ws.settled {
			continue
		}
		ms := pnow.Add(-mono.Sub(ws.at)).UnixMilli()
		ws.ms, ws.settled = w.stampAt(ws.key, ws.id, ms), true
		n++
	}
	w.deferred.Add(int64(-n))
	return nil
}

// applyStamps gives the values of batch, numbered from start, the stamps
// settle gave them, and forgets those stamps.
func (w *Writer) applyStamps(batch []Value, start int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	end := start + int64(len(batch))
	i := 0
	for ; i < len(w.waiting) && w.waiting[i].seq < end && w.waiting[i].settled; i++ {
		if ws := w.waiting[i]; ws.seq >= start {
			batch[ws.seq-start].Datetime = time.UnixMilli(ws.ms).UTC()
		}
	}
	w.waiting = w.waiting[i:]
	if len(w.waiting) == 0 {
		w.waiting = nil
	}
}

// stampWaiting stamps the values waiting for the platform's clock (see
// settle), trying again with the client's backoff while the clock cannot
// be learned; the writer is offline meanwhile. It reports false when the
// writer was aborted.
func (w *Writer) stampWaiting() bool {
	loop := transport.Loop{Policy: w.c.tr.Policy, Max: -1}
	last, _ := loop.Run(w.ctx, func(context.Context) transport.Step {
		err := w.settle()
		if err != nil {
			w.mu.Lock()
			w.stats.Online = false
			w.stats.LastError = err
			w.broadcastLocked()
			w.mu.Unlock()
		}
		return transport.Step{Err: err, Retry: err != nil}
	})
	return last.Err == nil
}

// readyLocked is how many of the next k values may be sent: those before
// the first one still waiting for its stamp (queued by an Add after the
// last settle). w.mu is held.
func (w *Writer) readyLocked(k int) int {
	for _, ws := range w.waiting {
		if ws.seq >= w.resolved+int64(k) {
			break
		}
		if !ws.settled {
			return int(max(ws.seq-w.resolved, 0))
		}
	}
	return k
}
