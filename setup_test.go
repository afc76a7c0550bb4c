// The tests' setup, in one place, as go-github's setup: setup builds what
// a test talks to (a test server by default, or a server for a handler, any
// base URL, an httpmock transport) and a client for it, with one fast retry
// policy.
package thethings_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

const sentinelToken = "TKN-SENTINEL-a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7"

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

// setup returns a client for sentinelToken with fastRetryPolicy and
// connections of its own, closed when the test ends, and the test server it
// talks to: a fresh one that knows sentinelToken, closed when the test ends.
// Without faults no request is retried, so request counts are exact. Each of
// opts is one of:
//   - a thethingstest.Option, for the test server;
//   - a thethings.Option, for the client, after the defaults above, which
//     it may replace;
//   - a base URL (string): the client talks to it instead, and no test
//     server is started (the server returned is nil);
//   - an http.Handler: the client talks instead to an httptest server that
//     runs it, at the platform's root /v2/ as the test server, closed when
//     the test ends;
//   - an *httpmock.MockTransport: the client's calls go to it instead, and
//     a request it does not match fails the test. The client's clock then
//     reads 26 years late in a synctest bubble, where time starts in 2000,
//     which a Writer would take for a board whose clock was never set (and
//     wait for the platform's clock, which a mock does not send).
func setup(t testing.TB, opts ...any) (*thethingstest.Server, *thethings.Client) {
	t.Helper()
	var srvOpts []thethingstest.Option
	var clientOpts []thethings.Option
	var baseURL string
	var mt *httpmock.MockTransport
	for _, o := range opts {
		switch o := o.(type) {
		case thethingstest.Option:
			srvOpts = append(srvOpts, o)
		case thethings.Option:
			clientOpts = append(clientOpts, o)
		case string:
			baseURL = o
		case *httpmock.MockTransport:
			mt = o
		case http.Handler:
			ts := httptest.NewServer(o)
			t.Cleanup(ts.Close)
			baseURL = ts.URL + "/v2/"
		default:
			t.Fatalf("setup: an option of type %T", o)
		}
	}
	if len(srvOpts) > 0 && (baseURL != "" || mt != nil) {
		t.Fatal("setup: test server options without a test server")
	}
	if mt != nil {
		mt.RegisterNoResponder(httpmock.NewNotFoundResponder(t.Fatal))
		c, err := thethings.NewClient(sentinelToken, append([]thethings.Option{
			thethings.WithHTTPClient(&http.Client{Transport: mt}),
			fastRetry,
			thethings.WithClock(func() time.Time {
				if now := time.Now(); now.Year() < 2025 {
					return now.AddDate(26, 0, 0)
				}
				return time.Now()
			}),
		}, clientOpts...)...)
		require.NoError(t, err)
		return nil, c
	}
	var srv *thethingstest.Server
	if baseURL == "" {
		srv = thethingstest.NewServer(t, append([]thethingstest.Option{thethingstest.WithThingTokens(sentinelToken)}, srvOpts...)...)
		baseURL = srv.URL()
	}
	unary := &http.Transport{}
	streamTr := &http.Transport{ResponseHeaderTimeout: 10 * time.Second}
	t.Cleanup(unary.CloseIdleConnections)
	t.Cleanup(streamTr.CloseIdleConnections)
	c, err := thethings.NewClient(sentinelToken, append([]thethings.Option{
		thethings.WithBaseURL(baseURL),
		thethings.WithHTTPClient(&http.Client{Transport: unary, Timeout: 10 * time.Second}),
		thethings.WithStreamHTTPClient(&http.Client{Transport: streamTr}),
		fastRetry,
	}, clientOpts...)...)
	require.NoError(t, err)
	return srv, c
}
