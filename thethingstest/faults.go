package thethingstest

import (
	"fmt"
	"net/http"
	"strconv"
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
//     n%Every429 == 0, it is 429. Both carry Retry-After (unless
//     NoRetryAfter) and a JSON error body, and nothing is stored. So with
//     Every503=2 and Every429=3 the 6th request gets 503, not 429.
//  3. Latency is waited (for subscriptions: before the first frame).
//  4. Write requests that got past step 2 and whose body was read (not
//     refused with 413 or 415) increment a second counter w. If DropEvery
//     > 0 and w%DropEvery == 0 the connection is closed without a
//     response, after storing and broadcasting the values when DropStores
//     is true, before when false. Otherwise, if StoreThenFailEvery > 0 and
//     w%StoreThenFailEvery == 0, the write is carried out (stored and
//     broadcast, or refused as usual when invalid) and its answer replaced
//     by StoreThenFailStatus, as when a proxy in front of the platform
//     gives up after forwarding the request. So with DropEvery=2 and
//     StoreThenFailEvery=3 the 6th write is dropped, and the 3rd and 9th
//     are stored then failed.
//
// The outages seen behind a load balancer are store-then-fail with status
// 502, 504 or 500, or 503 without Retry-After, and store-then-drop
// (DropEvery with DropStores): the values are stored but the client cannot
// know it. A client that re-sends blindly stores duplicates
// (Server.Duplicates counts them); one that gives up reports as failed
// values that were stored. Every503 and DropStores false are the opposite
// case: nothing was stored.
//
// Stream faults: StreamCutAfter is read when a stream opens; StopKeepAlives,
// SplitFrames and CoalesceFrames are read for every frame, so they take
// effect on open streams too.
type Faults struct {
	// Latency is added before every response.
	Latency time.Duration
	// Every503 answers every Nth non-stream request 503 with Retry-After
	// (unless NoRetryAfter) and a JSON error body; nothing is stored.
	Every503 int
	// Every429 answers every Nth non-stream request 429 "Too Many
	// Requests" with Retry-After (unless NoRetryAfter); nothing is stored.
	Every429 int
	// RetryAfter is the Retry-After value for the two above, sent in whole
	// seconds (rounded up, at least 1). Zero means 1s.
	RetryAfter time.Duration
	// NoRetryAfter leaves the Retry-After header out of the Every503 and
	// Every429 answers, as many real 503s (from proxies and load
	// balancers) and some 429s come without it.
	NoRetryAfter bool
	// DropBeforeBodyEvery closes the connection of every Nth non-stream
	// request before its body is read, with no response; nothing is stored.
	DropBeforeBodyEvery int
	// DropEvery closes the connection of every Nth write request after its
	// body was read, with no response.
	DropEvery int
	// DropStores, with DropEvery, stores (and broadcasts) the values of a
	// dropped write before dropping it; false drops it unstored.
	DropStores bool
	// StoreThenFailEvery stores and broadcasts every Nth write request
	// (counted with DropEvery; see the order of evaluation in the doc of
	// Faults), then answers it with StoreThenFailStatus instead of 201.
	StoreThenFailEvery int
	// StoreThenFailStatus is the status of those answers: 500, 502, 503 or
	// 504; 0 means 502. The body is what sends it in practice: the
	// platform's JSON error envelope for 500, a proxy's short HTML error
	// page (Content-Type text/html) for the others.
	StoreThenFailStatus int
	// StoreThenFailRetryAfter, when positive, adds a Retry-After header
	// (whole seconds, rounded up) to those answers; by default they have
	// none.
	StoreThenFailRetryAfter time.Duration
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

// Validate reports the first invalid field: a negative count or duration,
// or a StoreThenFailStatus other than 0, 500, 502, 503 and 504.
func (f Faults) Validate() error {
	switch f.StoreThenFailStatus {
	case 0, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
	default:
		return fmt.Errorf("thethingstest: Faults.StoreThenFailStatus %d: use 500, 502, 503 or 504", f.StoreThenFailStatus)
	}
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
		{"StoreThenFailEvery", int64(f.StoreThenFailEvery)},
		{"StoreThenFailRetryAfter", int64(f.StoreThenFailRetryAfter)},
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

// retryAfterSeconds is d in whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// storeThenFailStatus is the status of a store-then-fail answer.
func (f Faults) storeThenFailStatus() int {
	switch f.StoreThenFailStatus {
	case http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return f.StoreThenFailStatus
	}
	return http.StatusBadGateway
}

// proxyPage is the body a reverse proxy (nginx's default error page)
// sends with an error of its own.
func proxyPage(status int) []byte {
	line := strconv.Itoa(status) + " " + http.StatusText(status)
	return []byte("<html>\r\n<head><title>" + line + "</title></head>\r\n<body>\r\n<center><h1>" +
		line + "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
}

// answerStoreThenFail answers a write that was carried out with the
// failure f configures.
func answerStoreThenFail(w http.ResponseWriter, f Faults) {
	status := f.storeThenFailStatus()
	if f.StoreThenFailRetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(f.StoreThenFailRetryAfter)))
	}
	if status == http.StatusInternalServerError {
		writeError(w, status, "Internal Server Error")
		return
	}
	body := proxyPage(status)
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
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
