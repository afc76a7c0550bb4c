package thethings_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
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

// TestWriterNeverTwinsADatedValue: an undated value added in the same
// millisecond as an identical value the caller dated gets another stamp,
// so that a read back cannot take one for the other. Here every second
// write is dropped unstored, which is the twin's: it must be sent again.
func TestWriterNeverTwinsADatedValue(t *testing.T) {
	t.Parallel()
	at := time.Now().UTC().Truncate(time.Millisecond)
	srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{DropEvery: 2}), thethings.WithClock(func() time.Time { return at }))
	w := mustWriter(t, c, thethings.WithBatchSize(1), thethings.WithFlushInterval(0))
	ctx := context.Background()
	for i := range 20 {
		require.NoError(t, w.Add(ctx, thethings.Value{Key: "n", Value: i, Datetime: at}))
		require.NoError(t, w.Add(ctx, thethings.Value{Key: "n", Value: i}))
	}
	require.NoError(t, w.Close(ctx))
	assert.Equal(t, 40, srv.StoredCount(sentinelToken, "n"))
	assert.Zero(t, srv.Duplicates())
	assert.Zero(t, w.Stats().Failed)
}

// TestWriterStampsOnThePlatformClock: a device whose clock is 56 years
// behind (a board without a battery-backed clock) stores its values at the
// platform's time, including those added while the platform could not be
// reached at start, in memory and in a spool.
func TestWriterStampsOnThePlatformClock(t *testing.T) {
	for _, spooled := range []bool{false, true} {
		name := "memory"
		if spooled {
			name = "spool"
		}
		t.Run(name, func(t *testing.T) {
			srv, _ := setup(t)
			ignore := goleak.IgnoreCurrent()
			px := startProxy(t, srv.URL())
			px.down()
			behind := func() time.Time { return time.Now().AddDate(-56, 0, 0) }
			c, err := thethings.NewClient(sentinelToken, thethings.WithBaseURL(px.url), fastRetry, thethings.WithClock(behind))
			require.NoError(t, err)
			opts := []thethings.WriterOption{thethings.WithBatchSize(4), thethings.WithFlushInterval(0)}
			if spooled {
				opts = append(opts, thethings.WithSpool(t.TempDir()))
			}
			w := mustWriter(t, c, opts...)
			ctx := context.Background()
			start := time.Now()
			require.NoError(t, w.Add(ctx, intValues("n", 0, 10)...))
			fctx, cancel := context.WithCancel(ctx)
			flushed := make(chan error, 1)
			go func() { flushed <- w.Flush(fctx) }()
			require.True(t, testkit.Eventually(t, "the writer reports an error", func() bool { return w.Stats().LastError != nil }))
			assert.False(t, w.Stats().Online)
			cancel()
			require.Error(t, <-flushed)
			assert.Zero(t, srv.StoredCount(sentinelToken, "n"), "nothing sent before it is stamped")

			px.up()
			require.NoError(t, w.Add(ctx, intValues("n", 10, 10)...))
			require.NoError(t, w.Close(ctx))
			end := time.Now()
			px.close()
			assertStoredOnce(t, srv, "n", 20)
			for _, r := range srv.Stored(sentinelToken, "n") {
				assert.WithinRange(t, r.Datetime, start.Add(-time.Second), end.Add(time.Second), "value %s", r.Value)
			}
			goleak.VerifyNone(t, ignore)
		})
	}
}

// TestWriterStampsWaitingValuesByTheirAge: values added before the
// platform ever answered wait; once it does, each is stamped at the
// platform's time when it was added, measured back on the monotonic clock
// to the millisecond, and only then sent.
func TestWriterStampsWaitingValuesByTheirAge(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		offset := 26*365*24*time.Hour + 1234*time.Millisecond
		platform := func() time.Time { return time.Now().Add(offset).UTC() }
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt, thethings.WithClock(func() time.Time { return time.Unix(0, 0) }),
			thethings.WithRetry(thethings.RetryPolicy{MaxRetries: -1, MinWait: time.Second, MaxWait: time.Minute}))
		var reachable atomic.Bool
		answer := func(status int, body string) (*http.Response, error) {
			if !reachable.Load() {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
			}
			r := httpmock.NewStringResponse(status, body)
			r.Header.Set("Date", platform().Format(http.TimeFormat))
			return r, nil
		}
		mt.RegisterResponder(http.MethodGet, "=~utils/date", func(*http.Request) (*http.Response, error) {
			return answer(200, `{"date":"`+platform().Format("2006-01-02T15:04:05.000Z")+`"}`)
		})
		var rec recorded
		mt.RegisterResponder(http.MethodPost, writeURL, func(r *http.Request) (*http.Response, error) {
			resp, err := answer(201, `{"status":"created"}`)
			if err == nil {
				_, _ = rec.responder(201, `{"status":"created"}`)(r)
			}
			return resp, err
		})
		w := mustWriter(t, c, thethings.WithFlushInterval(time.Second))
		ctx := context.Background()
		want := []time.Time{platform().Truncate(time.Millisecond)}
		require.NoError(t, w.Add(ctx, thethings.Value{Key: "n", Value: 0}))
		time.Sleep(30 * time.Minute)
		want = append(want, platform().Truncate(time.Millisecond))
		require.NoError(t, w.Add(ctx, thethings.Value{Key: "n", Value: 1}))
		synctest.Wait()
		assert.Empty(t, rec.Bodies(), "nothing sent before it is stamped")
		assert.False(t, w.Stats().Online)
		reachable.Store(true)
		require.NoError(t, w.Close(ctx))
		var got []time.Time
		for _, body := range rec.Bodies() {
			var b struct {
				Values []struct {
					Datetime string `json:"datetime"`
				} `json:"values"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &b))
			for _, v := range b.Values {
				d, err := thethings.ParseTime(v.Datetime)
				require.NoError(t, err)
				got = append(got, d)
			}
		}
		// The platform's clock is learned to the millisecond it answers.
		require.Len(t, got, len(want))
		for i := range want {
			assert.WithinDuration(t, want[i], got[i], time.Millisecond, "value %d", i)
		}
	})
}

// TestWithClockNil: a nil clock is an invalid option, not a panic later.
func TestWithClockNil(t *testing.T) {
	t.Parallel()
	_, err := thethings.NewClient(sentinelToken, thethings.WithClock(nil))
	assert.ErrorIs(t, err, thethings.ErrInvalidOption)
}

// TestWriterWithPlatformClock: with WithPlatformClock a device clock that
// looks right but is hours off is not used.
func TestWriterWithPlatformClock(t *testing.T) {
	t.Parallel()
	ahead := func() time.Time { return time.Now().Add(3 * time.Hour) }
	srv, c := setup(t, thethings.WithClock(ahead), thethings.WithPlatformClock())
	w := mustWriter(t, c, thethings.WithFlushInterval(0))
	ctx := context.Background()
	start := time.Now()
	require.NoError(t, w.Add(ctx, intValues("n", 0, 5)...))
	require.NoError(t, w.Flush(ctx))
	require.NoError(t, w.Add(ctx, intValues("n", 5, 5)...)) // stamped at Add: the clock is known
	require.NoError(t, w.Close(ctx))
	end := time.Now()
	assertStoredOnce(t, srv, "n", 10)
	for _, r := range srv.Stored(sentinelToken, "n") {
		assert.WithinRange(t, r.Datetime, start.Add(-time.Second), end.Add(time.Second), "value %s", r.Value)
	}
}

// TestWriterSpoolFromEarlierBootGoesOutUndated: values a Writer spooled
// while it waited for the platform's clock lose their age with the process
// that measured it. The next Writer on the spool sends them without a
// Datetime, for the platform to stamp, never with the board's 1970 clock.
func TestWriterSpoolFromEarlierBootGoesOutUndated(t *testing.T) {
	srv, _ := setup(t)
	px := startProxy(t, srv.URL())
	px.down()
	behind := func() time.Time { return time.Now().AddDate(-56, 0, 0) }
	_, c := setup(t, px.url, thethings.WithClock(behind))
	dir := t.TempDir()
	w := mustWriter(t, c, thethings.WithSpool(dir), thethings.WithFlushInterval(0))
	require.NoError(t, w.Add(context.Background(), intValues("n", 0, 5)...))
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the board loses power before the platform ever answered
	require.Error(t, w.Close(ctx), "the values stay in the spool")
	assert.Zero(t, srv.StoredCount(sentinelToken, "n"))

	px.up()
	start := time.Now()
	w = mustWriter(t, c, thethings.WithSpool(dir))
	require.NoError(t, w.Close(context.Background()))
	assertStoredOnce(t, srv, "n", 5)
	for _, r := range srv.Stored(sentinelToken, "n") {
		assert.WithinRange(t, r.Datetime, start.Add(-time.Second), time.Now().Add(time.Second), "value %s: the platform's time", r.Value)
	}
}
