package thethingstest

import (
	"fmt"
	"net/http"
	"time"
)

// Faults injects misbehaviour so that client retry, timeout and stream
// handling can be tested. The zero value injects nothing. Set it with
// WithFaults or, at any time and from any goroutine, with Server.SetFaults.
//
// Order of evaluation for each request:
//
//  1. The request is routed and counted in Requests.
//  2. Every request that is not a subscription (including unknown paths and
//     wrong methods) increments one global counter n. If DropBeforeBodyEvery
//     > 0 and n%DropBeforeBodyEvery == 0 the connection is closed at once,
//     before the request body is read. Otherwise, if Every503 > 0 and
//     n%Every503 == 0 the answer is 503; otherwise, if Every429 > 0 and
//     n%Every429 == 0, it is 429. Both carry Retry-After and a JSON error
//     body, and nothing is stored. So with Every503=2 and Every429=3 the
//     6th request gets 503, not 429.
//  3. Latency is waited (for subscriptions: before the first frame).
//  4. Write requests that got past step 2 and whose body was read (not
//     refused with 413 or 415) increment a second counter w; if DropEvery > 0 and w%DropEvery == 0 the
//     connection is closed without a response, after storing and
//     broadcasting the values when DropStores is true, before when false.
//
// Stream faults: StreamCutAfter is read when a stream opens; StopKeepAlives,
// SplitFrames and CoalesceFrames are read for every frame, so they take
// effect on open streams too.
type Faults struct {
	// Latency is added before every response.
	Latency time.Duration
	// Every503 answers every Nth non-stream request 503 with Retry-After
	// and a JSON error body; nothing is stored.
	Every503 int
	// Every429 answers every Nth non-stream request 429 "Too Many
	// Requests" with Retry-After; nothing is stored.
	Every429 int
	// RetryAfter is the Retry-After value for the two above, sent in whole
	// seconds (rounded up, at least 1). Zero means 1s.
	RetryAfter time.Duration
	// DropBeforeBodyEvery closes the connection of every Nth non-stream
	// request before its body is read, with no response; nothing is stored.
	DropBeforeBodyEvery int
	// DropEvery closes the connection of every Nth write request after its
	// body was read, with no response.
	DropEvery int
	// DropStores, with DropEvery, stores (and broadcasts) the values of a
	// dropped write before dropping it; false drops it unstored.
	DropStores bool
	// StreamCutAfter closes subscription streams this long after they
	// opened, abruptly (no final chunk).
	StreamCutAfter time.Duration
	// StopKeepAlives stops the {} keep-alive frames while keeping the
	// stream open.
	StopKeepAlives bool
	// SplitFrames writes each stream frame one byte at a time, flushing
	// after each byte.
	SplitFrames bool
	// CoalesceFrames buffers stream frames and flushes them together, every
	// 50ms or every 16 frames, instead of one chunk per frame.
	CoalesceFrames bool
}

// Validate reports the first invalid field: a negative count or duration.
func (f Faults) Validate() error {
	for _, c := range []struct {
		name string
		v    int64
	}{
		{"Latency", int64(f.Latency)},
		{"Every503", int64(f.Every503)},
		{"Every429", int64(f.Every429)},
		{"RetryAfter", int64(f.RetryAfter)},
		{"DropBeforeBodyEvery", int64(f.DropBeforeBodyEvery)},
		{"DropEvery", int64(f.DropEvery)},
		{"StreamCutAfter", int64(f.StreamCutAfter)},
	} {
		if c.v < 0 {
			return fmt.Errorf("thethingstest: Faults.%s is negative", c.name)
		}
	}
	return nil
}

const (
	coalesceInterval = 50 * time.Millisecond
	coalesceFrames   = 16
)

func (f Faults) retryAfterSeconds() int {
	d := f.RetryAfter
	if d <= 0 {
		d = time.Second
	}
	secs := int((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return secs
}

// sleep waits d, or less when the request or the server ends first.
func (s *Server) sleep(r *http.Request, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	case <-s.done:
	}
}
