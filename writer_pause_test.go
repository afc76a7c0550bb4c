package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/thethingstest"
)

// canned is an answer a refuser gives instead of forwarding.
type canned struct {
	status int
	ctype  string
	body   string
}

var (
	htmlNotFound   = &canned{404, "text/html", "<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>"}
	jsonThingGone  = &canned{404, "application/json", `{"status":"error","message":"Thing token doesn't exist"}`}
	jsonNoAuth     = &canned{401, "application/json", `{"status":"error","code":401,"message":"Invalid session token"}`}
	jsonForbidden  = &canned{403, "application/json", `{"status":"error","code":403,"message":"Forbidden"}`}
	jsonRateLimit  = &canned{403, "application/json", `{"status":"error","code":403,"message":"Rate limit exceeded"}`}
	plainTimeout   = &canned{408, "text/plain", "request timeout"}
	jsonBadRequest = &canned{400, "application/json", `{"status":"error","code":400,"message":"invalid value"}`}
)

// refuser is a reverse proxy in front of the test server to, served by
// setup, that answers some requests itself, as a broken proxy, a wrong URL
// or a platform that refuses the thing would: decide picks the answer of
// each request (nil: forward it). It counts the canned answers it gives.
type refuser struct {
	to *thethingstest.Server

	mu      sync.Mutex
	decide  func(r *http.Request) *canned
	refused int // canned answers given
	waited  int // of those, the ones waitRefused waited for
}

func (rp *refuser) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rp.mu.Lock()
	decide := rp.decide
	rp.mu.Unlock()
	if decide != nil {
		if a := decide(r); a != nil {
			w.Header().Set("Content-Type", a.ctype)
			w.WriteHeader(a.status)
			_, _ = w.Write([]byte(a.body))
			rp.mu.Lock()
			rp.refused++
			rp.mu.Unlock()
			return
		}
	}
	target, err := url.Parse(rp.to.URL())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host}).ServeHTTP(w, r)
}

// set makes every request get a (nil: forward all).
func (rp *refuser) set(a *canned) {
	rp.setFunc(func(*http.Request) *canned { return a })
}

func (rp *refuser) setFunc(f func(*http.Request) *canned) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.decide = f
}

// waitRefused waits for n more canned answers.
func (rp *refuser) waitRefused(t *testing.T, n int) {
	t.Helper()
	if !testkit.Eventually(t, fmt.Sprintf("%d more requests refused", n), func() bool {
		rp.mu.Lock()
		defer rp.mu.Unlock()
		if rp.refused < rp.waited+n {
			return false
		}
		rp.waited += n
		return true
	}) {
		t.FailNow()
	}
}

// pauseHandler collects the errors the writer reports; wait waits for
// each.
type pauseHandler struct {
	mu     sync.Mutex
	errs   []*thethings.WriteError
	waited int // errors wait has returned for
}

func (h *pauseHandler) handle(we *thethings.WriteError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.errs = append(h.errs, we)
}

func (h *pauseHandler) wait(t *testing.T) {
	t.Helper()
	if !testkit.Eventually(t, "the error handler is called", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.errs) == h.waited {
			return false
		}
		h.waited++
		return true
	}) {
		t.FailNow()
	}
}

func (h *pauseHandler) all() []*thethings.WriteError {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*thethings.WriteError(nil), h.errs...)
}

// pausePolicy retries fast: a paused writer tries again within MaxWait.
var pausePolicy = thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 1, MinWait: time.Millisecond, MaxWait: 20 * time.Millisecond})

// TestWriterPausesOnRefusalOfTheThing: an answer that refuses the thing,
// not the values (401, 403, a 404 of the platform), or that is not the
// platform's (an HTML 404), pauses delivery: the values stay, in memory or
// in the spool, the handler hears it once, Stats says why, and once the
// server answers again every value arrives, once.
func TestWriterPausesOnRefusalOfTheThing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		answer *canned
		is     error
	}{
		{"HTML 404", htmlNotFound, thethings.ErrNotFound},
		{"JSON 404", jsonThingGone, thethings.ErrThingNotFound},
		{"JSON 401", jsonNoAuth, thethings.ErrUnauthorized},
		{"JSON 403", jsonForbidden, thethings.ErrUnauthorized},
	}
	for _, tc := range cases {
		for _, spooled := range []bool{false, true} {
			name := tc.name
			if spooled {
				name += " spooled"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				srv, _ := setup(t)
				rp := &refuser{to: srv}
				rp.set(tc.answer)
				_, c := setup(t, rp, pausePolicy)
				h := new(pauseHandler)
				opts := []thethings.WriterOption{thethings.WithBatchSize(10), thethings.WithFlushInterval(0), thethings.WithErrorHandler(h.handle)}
				dir := t.TempDir()
				if spooled {
					opts = append(opts, thethings.WithSpool(dir))
				}
				w := mustWriter(t, c, opts...)
				ctx := context.Background()
				require.NoError(t, w.Add(ctx, intValues("n", 0, 25)...))
				fctx, cancel := context.WithCancel(ctx)
				flushed := make(chan error, 1)
				go func() { flushed <- w.Flush(fctx) }()

				h.wait(t)
				rp.waitRefused(t, 3) // tried again, and again
				st := w.Stats()
				assert.False(t, st.Online)
				assert.ErrorIs(t, st.LastError, tc.is)
				assert.Equal(t, int64(25), st.Pending)
				assert.Zero(t, st.Failed)
				errs := h.all()
				require.Len(t, errs, 1, "once per pause")
				assert.ErrorIs(t, errs[0], tc.is)
				assert.Empty(t, errs[0].Values, "the values are kept, not handed back")
				assert.NotContains(t, errs[0].Error(), sentinelToken)
				assert.Zero(t, srv.StoredCount(sentinelToken, "n"))
				cancel()
				assert.ErrorIs(t, <-flushed, context.Canceled, "Flush waits while paused")

				rp.set(nil) // mended
				require.NoError(t, w.Add(ctx, intValues("n", 25, 5)...))
				require.NoError(t, w.Flush(ctx))
				st = w.Stats()
				assert.True(t, st.Online)
				assert.False(t, st.LastSuccess.IsZero())
				assert.Zero(t, st.Pending)
				require.NoError(t, w.Close(ctx))
				assert.Len(t, h.all(), 1)
				assertStoredOnce(t, srv, "n", 30)
			})
		}
	}
}

// TestWriterPausesForAnUnknownThing: the emulator does not know the thing
// (a platform restart forgot it); once it does, everything arrives.
func TestWriterPausesForAnUnknownThing(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)
	const token = "thing-not-yet-known"
	c, err := thethings.NewClient(token, thethings.WithBaseURL(srv.URL()), pausePolicy)
	require.NoError(t, err)
	h := new(pauseHandler)
	w := mustWriter(t, c, thethings.WithBatchSize(10), thethings.WithFlushInterval(0), thethings.WithErrorHandler(h.handle))
	ctx := context.Background()
	require.NoError(t, w.Add(ctx, intValues("n", 0, 25)...))
	require.NoError(t, w.Add(ctx, thethings.Value{Key: "n", Value: 25, Datetime: time.Now()}))
	go func() { _ = w.Flush(ctx) }()
	h.wait(t)
	assert.ErrorIs(t, h.all()[0], thethings.ErrThingNotFound)
	assert.ErrorIs(t, w.Stats().LastError, thethings.ErrThingNotFound)
	srv.AddThing(token)
	require.NoError(t, w.Flush(ctx))
	require.NoError(t, w.Close(ctx))
	assert.Len(t, h.all(), 1)
	assert.Zero(t, srv.Duplicates())
	assert.Equal(t, 26, srv.StoredCount(token, "n"))
}

// TestWriterCloseDuringPauseReportsTheUnsent: Close returns when its
// context ends and names every value not sent, with the pause's reason.
func TestWriterCloseDuringPauseReportsTheUnsent(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)
	rp := &refuser{to: srv}
	rp.set(jsonNoAuth)
	_, c := setup(t, rp, pausePolicy)
	w := mustWriter(t, c, thethings.WithServerTimestamps(), thethings.WithBatchSize(10))
	vals := intValues("n", 0, 25)
	require.NoError(t, w.Add(context.Background(), vals...))
	rp.waitRefused(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := w.Close(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, thethings.ErrUnauthorized)
	// A request Close cut short may have been stored: its values are
	// reported with an unknown fate, the others as not written.
	notWritten, unknown := thethings.FailedValues(err)
	assert.ElementsMatch(t, ints(t, vals), ints(t, append(notWritten, unknown...)))
	assert.Zero(t, srv.StoredCount(sentinelToken, "n"))
}

// TestWriteReturnsRefusalsOfTheThing: Write, which has no buffer, returns
// the values of a refusal of the thing as not written.
func TestWriteReturnsRefusalsOfTheThing(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)
	rp := &refuser{to: srv}
	_, c := setup(t, rp, pausePolicy)
	for _, a := range []*canned{htmlNotFound, jsonThingGone, jsonNoAuth} {
		rp.set(a)
		vals := intValues("n", 0, 3, time.Now())
		err := c.Write(context.Background(), vals)
		var we *thethings.WriteError
		require.ErrorAs(t, err, &we, "%d", a.status)
		assert.False(t, we.Unknown)
		assert.Equal(t, vals, we.Values)
	}
	assert.Zero(t, srv.StoredCount(sentinelToken, "n"))
}

// TestWriterKeepsBatchOnPassingRefusals: 408, 429 and a 403 that says
// "rate limit", on the write or on its read back, store nothing and end
// nothing: the batch is sent again and arrives once.
func TestWriterKeepsBatchOnPassingRefusals(t *testing.T) {
	t.Parallel()
	for _, a := range []*canned{plainTimeout, jsonRateLimit} {
		for _, onRead := range []bool{false, true} {
			name := map[*canned]string{plainTimeout: "408", jsonRateLimit: "403 rate limit"}[a]
			if onRead {
				name += " read back"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				var f thethingstest.Faults
				if onRead {
					f = thethingstest.Faults{StoreThenFailEvery: 2}
				}
				srv, _ := setup(t, thethingstest.WithFaults(f))
				rp := &refuser{to: srv}
				var n atomic.Int32
				rp.setFunc(func(r *http.Request) *canned {
					if (r.Method == http.MethodPost) == onRead || n.Add(1) > 4 {
						return nil
					}
					return a
				})
				_, c := setup(t, rp, pausePolicy)
				h := new(pauseHandler)
				w := mustWriter(t, c, thethings.WithBatchSize(10), thethings.WithFlushInterval(0), thethings.WithErrorHandler(h.handle))
				ctx := context.Background()
				require.NoError(t, w.Add(ctx, intValues("n", 0, 30)...))
				require.NoError(t, w.Close(ctx))
				assert.Empty(t, h.all())
				assert.Greater(t, n.Load(), int32(4), "four refusals, then forwarded")
				assert.Zero(t, w.Stats().Failed)
				assertStoredOnce(t, srv, "n", 30)
			})
		}
	}
}

// TestWriterReportsValuesTheBatchRefused: a 400 in the platform's envelope
// is the one refusal that ends values: they go to the handler, and the
// values behind flow.
func TestWriterReportsValuesThePlatformRefused(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)
	rp := &refuser{to: srv}
	var n atomic.Int32
	rp.setFunc(func(r *http.Request) *canned {
		if r.Method == http.MethodPost && n.Add(1) == 1 {
			return jsonBadRequest
		}
		return nil
	})
	_, c := setup(t, rp, pausePolicy)
	h := new(pauseHandler)
	w := mustWriter(t, c, thethings.WithBatchSize(10), thethings.WithFlushInterval(0), thethings.WithErrorHandler(h.handle))
	ctx := context.Background()
	require.NoError(t, w.Add(ctx, intValues("n", 0, 30)...))
	err := w.Close(ctx)
	notWritten, _ := thethings.FailedValues(err)
	assert.Len(t, notWritten, 10)
	require.Len(t, h.all(), 1)
	assert.Len(t, h.all()[0].Values, 10)
	assert.Equal(t, 20, srv.StoredCount(sentinelToken, "n"))
	var ae *thethings.APIError
	require.True(t, errors.As(err, &ae))
	assert.Equal(t, 400, ae.StatusCode)
}

// TestWriterUnverifiableBatchDoesNotBlock: a batch that cannot be read back
// (a magic key holds no history; no read window ends after the last
// millisecond of 9999) whose request gets an ambiguous answer is reported
// with an unknown fate, like an undated value, and the values behind it
// flow.
func TestWriterUnverifiableBatchDoesNotBlock(t *testing.T) {
	t.Parallel()
	last := time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)
	for name, v := range map[string]thethings.Value{
		"magic key":       {Key: "$settings.mode", Value: "eco"},
		"last ms of 9999": {Key: "far", Value: 1, Datetime: last},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{StoreThenFailEvery: 1}))
			h := new(pauseHandler)
			w := mustWriter(t, c, thethings.WithBatchSize(1), thethings.WithFlushInterval(0), thethings.WithErrorHandler(h.handle))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, w.Add(ctx, v))
			err := w.Flush(ctx)
			require.ErrorIs(t, err, thethings.ErrOutcomeUnknown)
			_, unknown := thethings.FailedValues(err)
			require.Len(t, unknown, 1)
			assert.Equal(t, v.Key, unknown[0].Key)
			h.wait(t) // the handler runs after Flush saw the values resolved
			require.Len(t, h.all(), 1)

			srv.SetFaults(thethingstest.Faults{})
			require.NoError(t, w.Add(ctx, intValues("n", 0, 10)...))
			require.NoError(t, w.Flush(ctx))
			require.NoError(t, w.Close(ctx))
			assertStoredOnce(t, srv, "n", 10)
		})
	}
}

// TestWriterPausesOnReadBack: the read back of an ambiguous write meets a
// refusal of the thing: the batch waits, unresolved, and is resolved once
// reads are answered again, stored once.
func TestWriterPausesOnReadBack(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t, thethingstest.WithFaults(thethingstest.Faults{StoreThenFailEvery: 1}))
	rp := &refuser{to: srv}
	rp.setFunc(func(r *http.Request) *canned {
		if r.Method == http.MethodPost { // a write, not a read back
			return nil
		}
		return htmlNotFound
	})
	_, c := setup(t, rp, pausePolicy)
	h := new(pauseHandler)
	w := mustWriter(t, c, thethings.WithBatchSize(10), thethings.WithFlushInterval(0), thethings.WithErrorHandler(h.handle))
	ctx := context.Background()
	require.NoError(t, w.Add(ctx, intValues("n", 0, 10)...))
	go func() { _ = w.Flush(ctx) }()
	h.wait(t)
	rp.waitRefused(t, 2)
	assert.ErrorIs(t, w.Stats().LastError, thethings.ErrNotFound)
	assert.Equal(t, int64(10), w.Stats().Pending)
	srv.SetFaults(thethingstest.Faults{})
	rp.set(nil)
	require.NoError(t, w.Flush(ctx))
	require.NoError(t, w.Close(ctx))
	assert.Len(t, h.all(), 1)
	assert.Equal(t, int64(10), w.Stats().Verified)
	assertStoredOnce(t, srv, "n", 10)
}

// TestWriterOnlineFollowsAnswers: Online is false before the platform
// answered, true from the first 2xx, false during an outage and true again
// from the first 2xx after it; LastSuccess says when.
func TestWriterOnlineFollowsAnswers(t *testing.T) {
	srv, _ := setup(t)
	ignore := goleak.IgnoreCurrent()
	px := startProxy(t, srv.URL())
	_, c := setup(t, px.url, pausePolicy)
	w := mustWriter(t, c, thethings.WithFlushInterval(0))
	ctx := context.Background()
	st := w.Stats()
	assert.False(t, st.Online, "no answer yet")
	assert.True(t, st.LastSuccess.IsZero())

	require.NoError(t, w.Add(ctx, intValues("n", 0, 5)...))
	require.NoError(t, w.Flush(ctx))
	st = w.Stats()
	assert.True(t, st.Online)
	first := st.LastSuccess
	assert.False(t, first.IsZero())

	px.down()
	require.NoError(t, w.Add(ctx, intValues("n", 5, 5)...))
	fctx, cancel := context.WithCancel(ctx)
	flushed := make(chan error, 1)
	go func() { flushed <- w.Flush(fctx) }()
	require.True(t, testkit.Eventually(t, "the writer goes offline", func() bool { return !w.Stats().Online }))
	assert.Error(t, w.Stats().LastError)
	cancel()
	require.Error(t, <-flushed)

	px.up()
	require.NoError(t, w.Flush(ctx))
	st = w.Stats()
	assert.True(t, st.Online, "online again after the outage")
	assert.True(t, st.LastSuccess.After(first))
	require.NoError(t, w.Close(ctx))
	px.close()
	assertStoredOnce(t, srv, "n", 10)
	goleak.VerifyNone(t, ignore)
}
