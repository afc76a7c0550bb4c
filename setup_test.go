// The tests' setup, in one place, as go-github's setup: a test server and
// a client for it (setup; serverClient(t, srv.URL(), opts...) when the
// client needs options), a client for any other base URL (serverClient,
// which every client above is), one fast retry policy, the httpmock client
// for the tests that pin exact requests, and the one bounded wait
// (eventually).
package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

const sentinelToken = "TKN-SENTINEL-a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7"

// mockClient returns a client whose unary calls go to a fresh httpmock
// transport; unmatched requests fail the call. Its device clock reads 26
// years late in a synctest bubble, where time starts in 2000, which a
// Writer would take for a board whose clock was never set (and wait for
// the platform's clock, which a mock does not send).
func mockClient(t *testing.T, opts ...thethings.Option) (*thethings.Client, *httpmock.MockTransport) {
	t.Helper()
	mt := httpmock.NewMockTransport()
	mt.RegisterNoResponder(httpmock.NewNotFoundResponder(t.Fatal))
	opts = append([]thethings.Option{
		thethings.WithHTTPClient(&http.Client{Transport: mt}),
		fastRetry,
		thethings.WithClock(func() time.Time {
			if now := time.Now(); now.Year() < 2025 {
				return now.AddDate(26, 0, 0)
			}
			return time.Now()
		}),
	}, opts...)
	c, err := thethings.NewClient(sentinelToken, opts...)
	require.NoError(t, err)
	return c, mt
}

// fastRetryPolicy is the retry policy of the tests: the default number of
// retries, millisecond waits.
var fastRetryPolicy = thethings.RetryPolicy{MaxRetries: 3, MinWait: time.Millisecond, MaxWait: 5 * time.Millisecond}

// fastRetry is WithRetry(fastRetryPolicy).
var fastRetry = thethings.WithRetry(fastRetryPolicy)

// offlineURL is a base URL on loopback where nothing listens: every
// request to it fails to dial.
const offlineURL = "http://127.0.0.1:1/v2/"

// unreachable makes a client's every request fail at once as a refused
// dial does, before anything is sent. A real refused dial takes a moment,
// and a context that ends in it leaves the request's fate unknown: with
// unreachable no request is ever in flight when a context ends.
var unreachable = thethings.WithHTTPClient(&http.Client{Transport: refusedDial{}})

type refusedDial struct{}

func (refusedDial) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
}

// setup starts a test server that knows sentinelToken, closed when the
// test ends, and returns it with a client for that thing with
// fastRetryPolicy. Without faults no request is retried, so request counts
// are exact.
func setup(t testing.TB, opts ...thethingstest.Option) (*thethingstest.Server, *thethings.Client) {
	t.Helper()
	srv := thethingstest.NewServer(t, append([]thethingstest.Option{thethingstest.WithThingTokens(sentinelToken)}, opts...)...)
	return srv, serverClient(t, srv.URL())
}

// eventually waits until cond holds, and fails the test if it does not
// within 10 seconds: a wait for an event, with a deadline, never an
// unbounded loop. It may be called from any goroutine (it reports with
// Errorf); it returns whether cond held.
func eventually(t testing.TB, what string, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("never happened within 10s: %s", what)
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// serverClient returns a client for sentinelToken at baseURL with
// fastRetryPolicy and connections of its own, closed when the test ends.
// opts come after those and may replace them.
func serverClient(t testing.TB, baseURL string, opts ...thethings.Option) *thethings.Client {
	t.Helper()
	unary := &http.Transport{}
	streamTr := &http.Transport{ResponseHeaderTimeout: 10 * time.Second}
	t.Cleanup(unary.CloseIdleConnections)
	t.Cleanup(streamTr.CloseIdleConnections)
	opts = append([]thethings.Option{
		thethings.WithBaseURL(baseURL),
		thethings.WithHTTPClient(&http.Client{Transport: unary, Timeout: 10 * time.Second}),
		thethings.WithStreamHTTPClient(&http.Client{Transport: streamTr}),
		fastRetry,
	}, opts...)
	c, err := thethings.NewClient(sentinelToken, opts...)
	require.NoError(t, err)
	return c
}

// testCtx is a context that ends after d, or when the test ends.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// countingServer answers every request with status and counts them.
func countingServer(t *testing.T, status int, body string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}
