package thethings_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/thethingstest"
)

// intValues returns n values of key with the values from..from+n-1,
// without a Datetime or, given at, one millisecond apart from at.
func intValues(key string, from, n int, at ...time.Time) []thethings.Value {
	vals := make([]thethings.Value, n)
	for i := range vals {
		vals[i] = thethings.Value{Key: key, Value: from + i}
		if len(at) > 0 {
			vals[i].Datetime = at[0].Add(time.Duration(i) * time.Millisecond)
		}
	}
	return vals
}

// ints is the integer values of a write body (a string), of values, or of
// stored records, in order; records, which the store keeps newest first,
// come sorted.
func ints(t *testing.T, of any) []int {
	t.Helper()
	out := []int{}
	switch of := of.(type) {
	case string:
		var b struct {
			Values []struct {
				Value int `json:"value"`
			} `json:"values"`
		}
		require.NoError(t, json.Unmarshal([]byte(of), &b))
		for _, v := range b.Values {
			out = append(out, v.Value)
		}
	case []thethings.Value:
		for _, v := range of {
			out = append(out, v.Value.(int))
		}
	case []thethingstest.Record:
		for _, r := range of {
			n, err := strconv.Atoi(string(r.Value))
			require.NoError(t, err)
			out = append(out, n)
		}
		slices.Sort(out)
	default:
		t.Fatalf("ints of %T", of)
	}
	return out
}

func TestWriterFlushesOnBatchSize(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		var rec recorded
		mt.RegisterResponder(http.MethodPost, writeURL, rec.responder(201, `{"status":"created"}`))
		w := mustWriter(t, c, thethings.WithBatchSize(10), thethings.WithFlushInterval(0))
		ctx := context.Background()
		require.NoError(t, w.Add(ctx, intValues("n", 0, 9)...))
		time.Sleep(time.Hour)
		synctest.Wait()
		assert.Empty(t, rec.Bodies(), "no interval: a partial batch waits")
		require.NoError(t, w.Add(ctx, intValues("n", 9, 3)...))
		synctest.Wait()
		require.Len(t, rec.Bodies(), 1)
		assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, ints(t, rec.Bodies()[0]))
		require.NoError(t, w.Close(ctx))
		require.Len(t, rec.Bodies(), 2)
		assert.Equal(t, []int{10, 11}, ints(t, rec.Bodies()[1]))
	})
}

func TestWriterFlushesOnInterval(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		var rec recorded
		mt.RegisterResponder(http.MethodPost, writeURL, rec.responder(201, `{"status":"created"}`))
		w := mustWriter(t, c, thethings.WithFlushInterval(500*time.Millisecond))
		defer w.Close(context.Background())
		require.NoError(t, w.Add(context.Background(), intValues("n", 0, 3)...))
		time.Sleep(499 * time.Millisecond)
		synctest.Wait()
		assert.Empty(t, rec.Bodies())
		time.Sleep(time.Millisecond)
		synctest.Wait()
		require.Len(t, rec.Bodies(), 1)
		assert.Equal(t, []int{0, 1, 2}, ints(t, rec.Bodies()[0]))

		// The default interval is one second.
		w2 := mustWriter(t, c)
		defer w2.Close(context.Background())
		require.NoError(t, w2.Add(context.Background(), intValues("m", 0, 1)...))
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		assert.Len(t, rec.Bodies(), 1)
		time.Sleep(time.Millisecond)
		synctest.Wait()
		assert.Len(t, rec.Bodies(), 2)
	})
}

func TestWriterFlush(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	var rec recorded
	mt.RegisterResponder(http.MethodPost, writeURL, rec.responder(201, `{"status":"created"}`))
	w := mustWriter(t, c, thethings.WithFlushInterval(0), thethings.WithBatchSize(4))
	ctx := context.Background()
	require.NoError(t, w.Flush(ctx), "nothing to flush")
	require.NoError(t, w.Add(ctx, intValues("n", 0, 6)...))
	require.NoError(t, w.Flush(ctx))
	bodies := rec.Bodies()
	require.Len(t, bodies, 2)
	assert.Equal(t, []int{0, 1, 2, 3}, ints(t, bodies[0]))
	assert.Equal(t, []int{4, 5}, ints(t, bodies[1]))
	require.NoError(t, w.Close(ctx))
	assert.Len(t, rec.Bodies(), 2, "Close has nothing left to send")
}

func TestWriterWriteOptions(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	var rec recorded
	mt.RegisterResponder(http.MethodPost, writeURL, rec.responder(201, `{}`))
	w := mustWriter(t, c, thethings.WithWriteOptions(thethings.WithBroadcast(false)))
	require.NoError(t, w.Add(context.Background(), intValues("n", 0, 1)...))
	require.NoError(t, w.Close(context.Background()))
	require.Len(t, rec.queries, 1)
	assert.Equal(t, "broadcast=false", rec.queries[0])
}

// TestWriterRetriesRefusedBatches: batches the platform refused without
// storing stay buffered and go out again, in order, after a backoff.
func TestWriterRetriesRefusedBatches(t *testing.T) {
	t.Parallel()
	refusals := map[string]func() (*http.Response, error){
		"429": func() (*http.Response, error) {
			r := httpmock.NewStringResponse(429, `{"status":"error","message":"Too Many Requests"}`)
			r.Header.Set("Retry-After", "1")
			return r, nil
		},
		"503 with Retry-After": func() (*http.Response, error) {
			r := httpmock.NewStringResponse(503, `{"status":"error","message":"Service Unavailable"}`)
			r.Header.Set("Retry-After", "2")
			return r, nil
		},
		"dial failure": func() (*http.Response, error) {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
		},
	}
	for name, refuse := range refusals {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mt := httpmock.NewMockTransport()
				_, c := setup(t, mt, thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 1, MinWait: 10 * time.Millisecond, MaxWait: 100 * time.Millisecond}))
				var rec recorded
				ok := rec.responder(201, `{"status":"created"}`)
				var mu sync.Mutex
				var attempts []time.Time
				mt.RegisterResponder(http.MethodPost, writeURL, func(r *http.Request) (*http.Response, error) {
					mu.Lock()
					attempts = append(attempts, time.Now())
					n := len(attempts)
					mu.Unlock()
					if n <= 7 {
						return refuse()
					}
					return ok(r)
				})
				var handled []*thethings.WriteError
				w := mustWriter(t, c, thethings.WithServerTimestamps(), thethings.WithBatchSize(3), thethings.WithFlushInterval(0),
					thethings.WithErrorHandler(func(we *thethings.WriteError) { handled = append(handled, we) }))
				ctx := context.Background()
				start := time.Now()
				require.NoError(t, w.Add(ctx, intValues("n", 0, 5)...))
				require.NoError(t, w.Flush(ctx))
				require.NoError(t, w.Close(ctx))
				assert.Empty(t, handled)
				bodies := rec.Bodies()
				require.Len(t, bodies, 2)
				assert.Equal(t, []int{0, 1, 2}, ints(t, bodies[0]))
				assert.Equal(t, []int{3, 4}, ints(t, bodies[1]))
				// 7 refusals: 2 per call (MaxRetries 1) and the writer's own
				// backoff between calls, never above MaxWait.
				require.Len(t, attempts, 9)
				elapsed := time.Since(start)
				assert.Greater(t, elapsed, 30*time.Millisecond, "waits between attempts")
				assert.Less(t, elapsed, 8*100*time.Millisecond, "each wait capped by MaxWait")
			})
		})
	}
}

func TestWriterBackoffGrowsWithJitter(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt, thethings.WithRetry(thethings.RetryPolicy{MaxRetries: -1, MinWait: 8 * time.Millisecond, MaxWait: time.Second}))
		var mu sync.Mutex
		var at []time.Time
		mt.RegisterResponder(http.MethodPost, writeURL, func(*http.Request) (*http.Response, error) {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Now())
			if len(at) <= 6 {
				return httpmock.NewStringResponse(429, `{}`), nil
			}
			return httpmock.NewStringResponse(201, `{}`), nil
		})
		w := mustWriter(t, c, thethings.WithFlushInterval(0))
		require.NoError(t, w.Add(context.Background(), intValues("n", 0, 1)...))
		require.NoError(t, w.Close(context.Background()))
		require.Len(t, at, 7)
		for i := 1; i < len(at); i++ {
			gap := at[i].Sub(at[i-1])
			base := 8 * time.Millisecond << (i - 1)
			assert.GreaterOrEqual(t, gap, base/2, "retry %d", i)
			assert.LessOrEqual(t, gap, base, "retry %d", i)
		}
	})
}

func TestWriterReportsPermanentAndUnknown(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	var n atomic.Int32
	mt.RegisterResponder(http.MethodPost, writeURL, func(*http.Request) (*http.Response, error) {
		switch n.Add(1) {
		case 1:
			return httpmock.NewStringResponse(400, `{"status":"error","code":400,"message":"nope"}`), nil
		case 2:
			return httpmock.NewStringResponse(500, `{"status":"error","code":500,"message":"boom"}`), nil
		}
		return httpmock.NewStringResponse(201, `{"status":"created"}`), nil
	})
	var mu sync.Mutex
	var handled []*thethings.WriteError
	w := mustWriter(t, c, thethings.WithServerTimestamps(), thethings.WithBatchSize(2), thethings.WithFlushInterval(0),
		thethings.WithErrorHandler(func(we *thethings.WriteError) {
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, we)
		}))
	ctx := context.Background()
	vals := intValues("n", 0, 6)
	require.NoError(t, w.Add(ctx, vals...))
	err := w.Flush(ctx)
	require.Error(t, err)
	assert.ErrorIs(t, err, thethings.ErrOutcomeUnknown)
	errs := err.(interface{ Unwrap() []error }).Unwrap()
	require.Len(t, errs, 2)
	var refused, unknown *thethings.WriteError
	require.ErrorAs(t, errs[0], &refused)
	require.ErrorAs(t, errs[1], &unknown)
	assert.False(t, refused.Unknown)
	assert.Equal(t, vals[0:2], refused.Values)
	var ae *thethings.APIError
	require.ErrorAs(t, refused, &ae)
	assert.Equal(t, 400, ae.StatusCode)
	assert.True(t, unknown.Unknown)
	assert.Equal(t, vals[2:4], unknown.Values)
	assert.Equal(t, 3, int(n.Load()), "the unknown batch was not sent again")
	mu.Lock()
	assert.Equal(t, []*thethings.WriteError{refused, unknown}, handled)
	mu.Unlock()
	assert.NoError(t, w.Flush(ctx), "errors are returned once")
	assert.NoError(t, w.Close(ctx))
	assert.NotContains(t, err.Error(), sentinelToken)
}

func TestWriterCloseReturnsUnflushedErrors(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	mt.RegisterResponder(http.MethodPost, writeURL, httpmock.NewStringResponder(404, `{"status":"error","message":"Thing token doesn't exist"}`))
	w := mustWriter(t, c, thethings.WithServerTimestamps())
	vals := intValues("n", 0, 150)
	require.NoError(t, w.Add(context.Background(), vals...))
	// v0.3: a refusal of the thing pauses delivery and keeps the values:
	// Close returns when its context ends and reports them unsent.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := w.Close(ctx)
	assert.ErrorIs(t, err, thethings.ErrThingNotFound)
	var got []thethings.Value
	wes, others := walkWriteErrors(err)
	require.NotEmpty(t, wes)
	require.Empty(t, others, "every error is a WriteError")
	for _, we := range wes {
		// Unknown only for a request Close cut short.
		got = append(got, we.Values...)
	}
	assert.Equal(t, vals, got)
	assert.Equal(t, err, w.Close(context.Background()), "every Close returns the same result")
}

func TestWriterBoundedBuffer(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		release := make(chan struct{})
		var rec recorded
		ok := rec.responder(201, `{"status":"created"}`)
		mt.RegisterResponder(http.MethodPost, writeURL, func(r *http.Request) (*http.Response, error) {
			<-release
			return ok(r)
		})
		w := mustWriter(t, c, thethings.WithBatchSize(2), thethings.WithMaxBuffered(4), thethings.WithFlushInterval(0))
		ctx := context.Background()
		require.NoError(t, w.Add(ctx, intValues("n", 0, 2)...)) // goes in flight and blocks
		synctest.Wait()
		require.NoError(t, w.Add(ctx, intValues("n", 2, 2)...)) // fills the buffer

		// Full: Add waits until its context ends and takes nothing.
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		start := time.Now()
		err := w.Add(tctx, intValues("n", 100, 1)...)
		cancel()
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, time.Second, time.Since(start))

		// Several values are all or nothing.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		assert.ErrorIs(t, w.Add(cctx, intValues("n", 200, 3)...), context.Canceled)

		// A waiting Add goes through once the in-flight batch frees room.
		added := make(chan error, 1)
		go func() { added <- w.Add(ctx, intValues("n", 4, 2)...) }()
		synctest.Wait()
		select {
		case <-added:
			t.Fatal("Add did not wait for room")
		default:
		}
		release <- struct{}{}
		synctest.Wait()
		require.NoError(t, <-added)
		close(release)
		require.NoError(t, w.Close(ctx))
		var got []int
		for _, b := range rec.Bodies() {
			got = append(got, ints(t, b)...)
		}
		assert.Equal(t, []int{0, 1, 2, 3, 4, 5}, got, "refused Adds took nothing")
	})
}

func TestWriterAddValidation(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	w := mustWriter(t, c, thethings.WithMaxBuffered(100))
	ctx := context.Background()
	vals := intValues("n", 0, 3)
	vals[1].Key = "bad key"
	err := w.Add(ctx, vals...)
	assert.ErrorIs(t, err, thethings.ErrInvalidKey)
	var we *thethings.WriteError
	require.ErrorAs(t, err, &we)
	assert.Equal(t, vals, we.Values)
	assert.Contains(t, err.Error(), `values[1] (key "bad key")`)

	err = w.Add(ctx, thethings.Value{Key: "t", Value: 1, Geo: &thethings.Geo{Lat: 91}})
	assert.ErrorIs(t, err, thethings.ErrInvalidValue)

	err = w.Add(ctx, intValues("n", 0, 101)...)
	assert.ErrorIs(t, err, thethings.ErrInvalidValue, "more than the buffer can ever hold")

	require.NoError(t, w.Add(ctx))
	require.NoError(t, w.Close(ctx))
	assert.Zero(t, mt.GetTotalCallCount(), "nothing was taken")
}

func TestWriterCopiesGeo(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	var rec recorded
	mt.RegisterResponder(http.MethodPost, writeURL, rec.responder(201, `{}`))
	w := mustWriter(t, c, thethings.WithServerTimestamps())
	g := thethings.Geo{Lat: 1, Long: 2}
	ctx := context.Background()
	require.NoError(t, w.Add(ctx, thethings.Value{Key: "a", Value: 1, Geo: &g}))
	g.Lat = 3
	require.NoError(t, w.Add(ctx, thethings.Value{Key: "a", Value: 2, Geo: &g}))
	require.NoError(t, w.Close(ctx))
	assert.Equal(t, `{"values":[{"key":"a","value":1,"geo":{"lat":1,"long":2}},{"key":"a","value":2,"geo":{"lat":3,"long":2}}]}`, rec.Bodies()[0])
}

func TestWriterClosed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		release := make(chan struct{})
		mt.RegisterResponder(http.MethodPost, writeURL, func(*http.Request) (*http.Response, error) {
			<-release
			return httpmock.NewStringResponse(201, `{}`), nil
		})
		w := mustWriter(t, c, thethings.WithBatchSize(1), thethings.WithMaxBuffered(1))
		ctx := context.Background()
		require.NoError(t, w.Add(ctx, intValues("n", 0, 1)...))
		blocked := make(chan error, 1)
		go func() { blocked <- w.Add(ctx, intValues("n", 1, 1)...) }()

		var wg sync.WaitGroup
		results := make([]error, 10)
		for i := range results {
			wg.Go(func() { results[i] = w.Close(ctx) })
		}
		synctest.Wait()
		assert.ErrorIs(t, <-blocked, thethings.ErrWriterClosed, "a waiting Add is refused by Close")
		close(release)
		wg.Wait()
		for _, err := range results {
			assert.NoError(t, err)
		}
		assert.ErrorIs(t, w.Add(ctx, intValues("n", 2, 1)...), thethings.ErrWriterClosed)
		assert.ErrorIs(t, w.Add(ctx), thethings.ErrWriterClosed)
		assert.ErrorIs(t, w.Flush(ctx), thethings.ErrWriterClosed)
		assert.NoError(t, w.Close(ctx))
		assert.Equal(t, 1, mt.GetTotalCallCount())
	})
}

// TestWriterCloseCancelledListsUnsent: when Close's context ends first,
// every value still unsent comes back in a WriteError.
func TestWriterCloseCancelledListsUnsent(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		release := make(chan struct{})
		mt.RegisterResponder(http.MethodPost, writeURL, func(*http.Request) (*http.Response, error) {
			<-release
			return httpmock.NewStringResponse(201, `{}`), nil
		})
		w := mustWriter(t, c, thethings.WithServerTimestamps(), thethings.WithBatchSize(2))
		vals := intValues("n", 0, 5)
		require.NoError(t, w.Add(context.Background(), vals...))
		synctest.Wait() // the first batch is in flight
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := w.Close(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		// A transport that reports no connection events cannot prove the
		// in-flight batch never reached the server: it is unknown; the
		// batches never sent are not.
		wes, others := walkWriteErrors(err)
		require.Empty(t, others)
		require.Len(t, wes, 2)
		assert.True(t, wes[0].Unknown)
		assert.Equal(t, vals[:2], wes[0].Values)
		assert.False(t, wes[1].Unknown)
		assert.Equal(t, vals[2:], wes[1].Values)
		assert.Equal(t, err, w.Close(context.Background()))
		assert.Zero(t, w.Stats().Pending, "every value reported")
		close(release)
	})
}

func TestWriterCloseCancelledInFlightIsUnknown(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{Latency: time.Minute}))
	w := mustWriter(t, c, thethings.WithServerTimestamps(), thethings.WithBatchSize(2))
	vals := intValues("n", 0, 5)
	require.NoError(t, w.Add(context.Background(), vals...))
	require.True(t, testkit.Eventually(t, "a write in flight", func() bool { return srv.Requests(thethingstest.RouteWrite) > 0 }))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := w.Close(ctx)
	// The batch in flight is unknown, the rest not written.
	wes, others := walkWriteErrors(err)
	require.Empty(t, others)
	require.Len(t, wes, 2)
	assert.True(t, wes[0].Unknown)
	assert.Equal(t, vals[:2], wes[0].Values)
	assert.False(t, wes[1].Unknown)
	assert.Equal(t, vals[2:], wes[1].Values)
	assert.ErrorIs(t, wes[1], context.DeadlineExceeded)
	assert.NotContains(t, err.Error(), sentinelToken)
}

func TestWriterInvalidOptions(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	cases := map[string][]thethings.WriterOption{
		"batch 0":            {thethings.WithBatchSize(0)},
		"batch 1001":         {thethings.WithBatchSize(1001)},
		"negative interval":  {thethings.WithFlushInterval(-time.Second)},
		"buffer below batch": {thethings.WithBatchSize(50), thethings.WithMaxBuffered(49)},
		"buffer 0":           {thethings.WithMaxBuffered(0)},
		"nil option":         {nil},
		"no store nor bcast": {thethings.WithWriteOptions(thethings.WithStore(false), thethings.WithBroadcast(false))},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			w, err := c.NewWriter(opts...)
			assert.Nil(t, w)
			assert.ErrorIs(t, err, thethings.ErrInvalidOption)
		})
	}
	// Boundaries are valid.
	w := mustWriter(t, c, thethings.WithBatchSize(1000), thethings.WithMaxBuffered(1000), thethings.WithFlushInterval(0))
	require.NoError(t, w.Close(context.Background()))
	w = mustWriter(t, c, thethings.WithBatchSize(1), thethings.WithMaxBuffered(1))
	require.NoError(t, w.Close(context.Background()))
	assert.Zero(t, mt.GetTotalCallCount())
}

// TestWriterLeavesNoGoroutine is not parallel: it compares goroutines
// before and after.
func TestWriterLeavesNoGoroutine(t *testing.T) {
	before := goleak.IgnoreCurrent()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	mt.RegisterResponder(http.MethodPost, writeURL, httpmock.NewStringResponder(201, `{}`))
	w := mustWriter(t, c, thethings.WithServerTimestamps(), thethings.WithFlushInterval(time.Millisecond))
	require.NoError(t, w.Add(context.Background(), intValues("n", 0, 250)...))
	require.NoError(t, w.Close(context.Background()))
	goleak.VerifyNone(t, before)

	// Close with a context already cancelled, while a request hangs.
	release := make(chan struct{})
	defer close(release)
	mt.RegisterResponder(http.MethodPost, writeURL, func(*http.Request) (*http.Response, error) {
		<-release
		return httpmock.NewStringResponse(201, `{}`), nil
	})
	w = mustWriter(t, c, thethings.WithServerTimestamps())
	require.NoError(t, w.Add(context.Background(), intValues("n", 0, 250)...))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := w.Close(ctx)
	// A batch may already be in flight (unknown) beside the unsent rest:
	// together they are all 250 values.
	var reported []thethings.Value
	wes, others := walkWriteErrors(err)
	require.NotEmpty(t, wes)
	require.Empty(t, others, "every error is a WriteError")
	for _, we := range wes {
		reported = append(reported, we.Values...)
	}
	assert.ElementsMatch(t, intValues("n", 0, 250), reported)
	// httpmock's own responder goroutine waits for release; ignore it.
	goleak.VerifyNone(t, before, goleak.IgnoreAnyFunction("github.com/jarcoal/httpmock.runCancelable.func2"))
}

func TestWriterEmulatorConcurrentAdds(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	w := mustWriter(t, c, thethings.WithMaxBuffered(500))
	const producers, each = 8, 1250
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				if err := w.Add(context.Background(), thethings.Value{Key: "n", Value: p*each + i}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, w.Close(context.Background()))
	assertStoredOnce(t, srv, "n", producers*each)
	assert.Equal(t, producers*each/100, srv.Requests(thethingstest.RouteWrite), "full batches only")
}

// TestWriterFaultsLoseNothing: 100,000 values through a Writer while the
// platform answers every 7th request 503 and every 11th 429. Every value is
// stored exactly once.
func TestWriterFaultsLoseNothing(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{Every503: 7, Every429: 11, RetryAfter: time.Millisecond}))
	var reported atomic.Int32
	w := mustWriter(t, c, thethings.WithBatchSize(500), thethings.WithErrorHandler(func(*thethings.WriteError) { reported.Add(1) }))
	const producers, each = 4, 25000
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			vals := make([]thethings.Value, 0, 50)
			for i := range each {
				vals = append(vals, thethings.Value{Key: "n", Value: p*each + i})
				if len(vals) == cap(vals) {
					if err := w.Add(context.Background(), vals...); err != nil {
						t.Error(err)
						return
					}
					vals = vals[:0]
				}
			}
		})
	}
	// Flushes race with the producers.
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := w.Flush(context.Background()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-flushed
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, w.Close(ctx))
	assert.Zero(t, reported.Load())
	assertStoredOnce(t, srv, "n", producers*each)
	total := srv.Requests(thethingstest.RouteWrite)
	t.Logf("%d write requests for %d values", total, producers*each)
	assert.Greater(t, total, 200, "faults were met and retried")
}

// TestWriterDropsAreReported: with connections dropped after the request
// was read, every value is stored or reported Unknown, never lost silently
// and never stored twice.
func TestWriterDropsAreReported(t *testing.T) {
	t.Parallel()
	for _, stores := range []bool{false, true} {
		t.Run("DropStores="+strconv.FormatBool(stores), func(t *testing.T) {
			t.Parallel()
			srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{DropEvery: 5, DropStores: stores, Every503: 13, RetryAfter: time.Millisecond}))
			var mu sync.Mutex
			var handled []thethings.Value
			w := mustWriter(t, c, thethings.WithServerTimestamps(), thethings.WithErrorHandler(func(we *thethings.WriteError) {
				mu.Lock()
				defer mu.Unlock()
				assert.True(t, we.Unknown)
				handled = append(handled, we.Values...)
			}))
			const n = 20000
			for i := 0; i < n; i += 100 {
				require.NoError(t, w.Add(context.Background(), intValues("n", i, 100)...))
			}
			err := w.Close(context.Background())
			require.Error(t, err)
			assert.ErrorIs(t, err, thethings.ErrOutcomeUnknown)
			var reported []thethings.Value
			wes, others := walkWriteErrors(err)
			require.NotEmpty(t, wes)
			require.Empty(t, others, "every error is a WriteError")
			for _, we := range wes {
				assert.True(t, we.Unknown)
				reported = append(reported, we.Values...)
			}
			mu.Lock()
			assert.Equal(t, handled, reported, "the handler and Close see the same errors")
			mu.Unlock()

			assert.Zero(t, srv.Duplicates())
			stored := ints(t, srv.Stored(sentinelToken, "n"))
			isStored := make(map[int]bool, len(stored))
			for _, v := range stored {
				isStored[v] = true
			}
			isReported := map[int]bool{}
			for _, v := range ints(t, reported) {
				assert.False(t, isReported[v], "reported once")
				isReported[v] = true
			}
			assert.NotEmpty(t, isReported)
			for v := range n {
				if !isReported[v] {
					require.True(t, isStored[v], "value %d neither stored nor reported", v)
				} else if stores {
					assert.True(t, isStored[v], "DropStores: the dropped request was stored")
				} else {
					assert.False(t, isStored[v], "the dropped request was not stored")
				}
			}
			assert.Len(t, stored, n-len(isReported)*map[bool]int{false: 1, true: 0}[stores])
		})
	}
}

// TestWriterFlushTimeoutKeepsValues: while the platform keeps refusing,
// Flush gives up at its deadline but the values stay buffered and are
// written once the platform recovers.
func TestWriterFlushTimeoutKeepsValues(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		var refusing atomic.Bool
		refusing.Store(true)
		var rec recorded
		ok := rec.responder(201, `{"status":"created"}`)
		mt.RegisterResponder(http.MethodPost, writeURL, func(r *http.Request) (*http.Response, error) {
			if refusing.Load() {
				return httpmock.NewStringResponse(429, `{"status":"error","message":"Too Many Requests"}`), nil
			}
			return ok(r)
		})
		w := mustWriter(t, c, thethings.WithFlushInterval(0))
		require.NoError(t, w.Add(context.Background(), intValues("n", 0, 3)...))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := w.Flush(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		var we *thethings.WriteError
		assert.False(t, errors.As(err, &we), "nothing was given up")
		assert.Empty(t, rec.Bodies())

		refusing.Store(false)
		require.NoError(t, w.Close(context.Background()))
		require.Len(t, rec.Bodies(), 1)
		assert.Equal(t, []int{0, 1, 2}, ints(t, rec.Bodies()[0]))
	})
}

// TestWriterEmulator: geo, datetimes and write options go through the
// Writer; a batch the platform refuses reaches the handler with its values.
func TestWriterEmulator(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	var mu sync.Mutex
	var handled []*thethings.WriteError
	w := mustWriter(t, c, thethings.WithServerTimestamps(), thethings.WithBatchSize(2), thethings.WithFlushInterval(0),
		thethings.WithWriteOptions(thethings.WithBroadcast(false)),
		thethings.WithErrorHandler(func(we *thethings.WriteError) {
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, we)
		}))
	ctx := context.Background()
	dt := time.Date(2021, 6, 1, 10, 0, 0, 123_000_000, time.UTC)
	require.NoError(t, w.Add(ctx,
		thethings.Value{Key: "pos", Value: 1.5, Geo: &thethings.Geo{Lat: -33.5, Long: 151.25}, Datetime: dt},
		thethings.Value{Key: "pos", Value: 2.5, Datetime: dt.Add(-time.Hour)},
	))
	bad := []thethings.Value{{Key: "ok", Value: 1}, {Key: "$geo", Value: "not a point"}}
	require.NoError(t, w.Add(ctx, bad...))
	err := w.Flush(ctx)
	var we *thethings.WriteError
	require.ErrorAs(t, err, &we)
	assert.False(t, we.Unknown)
	assert.Equal(t, bad, we.Values)
	var ae *thethings.APIError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, 400, ae.StatusCode)
	mu.Lock()
	assert.Equal(t, []*thethings.WriteError{we}, handled)
	mu.Unlock()
	require.NoError(t, w.Close(ctx))

	recs := srv.Stored(sentinelToken, "pos")
	require.Len(t, recs, 2) // newest first
	assert.True(t, recs[1].Datetime.Equal(dt.Add(-time.Hour)))
	assert.Nil(t, recs[1].Geo)
	assert.True(t, recs[0].Datetime.Equal(dt))
	require.NotNil(t, recs[0].Geo)
	assert.Equal(t, thethingstest.Geo{Lat: -33.5, Long: 151.25}, *recs[0].Geo)
	assert.Zero(t, srv.StoredCount(sentinelToken, "ok"))
}

// mustWriter is NewWriter for options that are valid.
func mustWriter(tb testing.TB, c *thethings.Client, opts ...thethings.WriterOption) *thethings.Writer {
	tb.Helper()
	w, err := c.NewWriter(opts...)
	require.NoError(tb, err)
	return w
}
