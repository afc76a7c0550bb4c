package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// bodyCounter is an http.RoundTripper over a clone of
// http.DefaultTransport that counts the response bodies it hands out and
// those that were closed. Use it through WithHTTPClient (and
// WithStreamHTTPClient) to prove that the SDK closes every body.
type bodyCounter struct {
	rt               *http.Transport
	returned, closed atomic.Int64
}

func (bc *bodyCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := bc.rt.RoundTrip(r)
	if resp != nil && resp.Body != nil {
		bc.returned.Add(1)
		resp.Body = &countedBody{ReadCloser: resp.Body, bc: bc}
	}
	return resp, err
}

// open is the number of bodies handed out and not closed.
func (bc *bodyCounter) open() int64 { return bc.returned.Load() - bc.closed.Load() }

// httpClient is a unary client over the counter.
func (bc *bodyCounter) httpClient() *http.Client {
	return &http.Client{Transport: bc, Timeout: 10 * time.Second}
}

type countedBody struct {
	io.ReadCloser
	once sync.Once
	bc   *bodyCounter
}

func (b *countedBody) Close() error {
	b.once.Do(func() { b.bc.closed.Add(1) })
	return b.ReadCloser.Close()
}

// The counter counts: a body left open shows, a closed one does not.
func TestBodyCounterCounts(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)
	bc := &bodyCounter{rt: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(bc.rt.CloseIdleConnections)
	resp, err := bc.httpClient().Get(srv.URL())
	require.NoError(t, err)
	assert.EqualValues(t, 1, bc.open())
	resp.Body.Close()
	resp.Body.Close()
	assert.EqualValues(t, 0, bc.open())
	assert.EqualValues(t, 1, bc.returned.Load())
}

// bodyOp is one SDK operation, run with a client for a thing token, made
// with opts. Activation makes a client of its own, with opts and the
// code the test made c's token.
type bodyOp func(ctx context.Context, c *thethings.Client, opts []thethings.Option) error

var bodyOps = map[string]bodyOp{
	"Activate": func(ctx context.Context, c *thethings.Client, opts []thethings.Option) error {
		_, err := thethings.Activate(ctx, c.ThingToken(), "", opts...)
		return err
	},
	"ServerTime": func(ctx context.Context, c *thethings.Client, _ []thethings.Option) error {
		_, err := c.ServerTime(ctx)
		return err
	},
	"Write": func(ctx context.Context, c *thethings.Client, _ []thethings.Option) error {
		return c.Write(ctx, intValues("k", 0, 150)) // two requests
	},
	"Writer": func(ctx context.Context, c *thethings.Client, _ []thethings.Option) error {
		w, err := c.NewWriter(thethings.WithBatchSize(5), thethings.WithFlushInterval(0))
		if err != nil {
			return err
		}
		if err := w.Add(ctx, intValues("k", 0, 12)...); err != nil {
			return errors.Join(err, w.Close(ctx))
		}
		return w.Close(ctx)
	},
	"Read": func(ctx context.Context, c *thethings.Client, _ []thethings.Option) error {
		_, err := c.Read(ctx, "seeded", &thethings.ReadOptions{Limit: 3})
		return err
	},
	"ReadUnknownKey": func(ctx context.Context, c *thethings.Client, _ []thethings.Option) error {
		_, err := c.Read(ctx, "never-written", nil)
		return err
	},
	"Values": func(ctx context.Context, c *thethings.Client, _ []thethings.Option) error {
		for _, err := range c.Values(ctx, "seeded", &thethings.ReadOptions{Limit: 4}) {
			if err != nil {
				return err
			}
		}
		return nil
	},
	"ValuesBreak": func(ctx context.Context, c *thethings.Client, _ []thethings.Option) error {
		for _, err := range c.Values(ctx, "seeded", &thethings.ReadOptions{Limit: 4}) {
			if err != nil {
				return err
			}
			break
		}
		return nil
	},
	"Subscribe": func(ctx context.Context, c *thethings.Client, _ []thethings.Option) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wrote := false
		var writeErr error
		onState := func(s thethings.State, _ error) {
			if s == thethings.StateConnected && !wrote {
				wrote = true
				if writeErr = c.Write(ctx, intValues("k", 0, 1)); writeErr != nil {
					cancel()
				}
			}
		}
		for _, err := range c.Subscribe(ctx, thethings.WithReconnect(1), thethings.WithKeepAlive(time.Second),
			thethings.WithBackfill("k"), thethings.WithStateHandler(onState)) {
			if err != nil {
				return errors.Join(writeErr, err)
			}
			break // the first message
		}
		return writeErr
	},
	"Location": func(ctx context.Context, c *thethings.Client, _ []thethings.Option) error {
		if err := c.SetLocation(ctx, thethings.Geo{Lat: 41.39, Long: 2.15}); err != nil {
			return err
		}
		_, err := c.Location(ctx)
		return err
	},
	"Settings": func(ctx context.Context, c *thethings.Client, _ []thethings.Option) error {
		if err := c.SetSettings(ctx, map[string]any{"a": map[string]any{"b": 1}}); err != nil {
			return err
		}
		if err := c.SetSetting(ctx, "a.c", "x"); err != nil {
			return err
		}
		var b int
		if err := c.Setting(ctx, "a.b", &b); err != nil {
			return err
		}
		_, err := c.Settings(ctx)
		return err
	},
}

// bodyScenario is a way for the platform to answer.
type bodyScenario struct {
	faults thethingstest.Faults
	// prime writes this many values to another key before the faults
	// are set, so that every-Nth faults hit the operation's first request.
	prime int
	// token and code replace the known thing token and activation code.
	token, code string
	// handler replaces the emulator with a misbehaving server.
	handler http.HandlerFunc
	timeout time.Duration
	// silent: a write may get no answer at all.
	silent bool
}

var bodyScenarios = map[string]bodyScenario{
	"ok":                    {},
	"unknown thing (4xx)":   {token: "no-such-thing", code: "no-such-code"},
	"503 always":            {faults: thethingstest.Faults{Every503: 1}, timeout: 300 * time.Millisecond}, // the Writer retries until Close's deadline
	"503 retried":           {faults: thethingstest.Faults{Every503: 2}, prime: 1},
	"429 always":            {faults: thethingstest.Faults{Every429: 1}, timeout: 300 * time.Millisecond},
	"429 retried":           {faults: thethingstest.Faults{Every429: 2}, prime: 1},
	"drop before body":      {faults: thethingstest.Faults{DropBeforeBodyEvery: 2}, prime: 1, silent: true},
	"drop after body":       {faults: thethingstest.Faults{DropEvery: 2, DropStores: true}, prime: 1, silent: true},
	"latency past deadline": {faults: thethingstest.Faults{Latency: 5 * time.Second}, timeout: 100 * time.Millisecond, silent: true},
	"500 text": {handler: func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, strings.Repeat("internal error ", 1000), http.StatusInternalServerError)
	}},
	"200 garbage": {handler: func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"created","thingToken":`+strings.Repeat("[", 5000))
	}},
}

// TestResponseBodiesClosed runs every operation (the subscription included) through every kind of
// answer (success, 4xx, 5xx with and without retries, 429, connections
// dropped before and after the body was read, a deadline during a slow
// answer, a malformed success) with a counting transport, and checks that
// every response body handed to the SDK was closed when the call returned.
func TestResponseBodiesClosed(t *testing.T) {
	t.Parallel()
	for sname, sc := range bodyScenarios {
		for oname, op := range bodyOps {
			t.Run(sname+"/"+oname, func(t *testing.T) {
				t.Parallel()
				token, code := sentinelToken, "code-1"
				if sc.token != "" {
					token, code = sc.token, sc.code
				}
				if oname == "Activate" {
					token = code
				}
				var base string
				var srv *thethingstest.Server
				if sc.handler != nil {
					hs := httptest.NewServer(sc.handler)
					t.Cleanup(hs.Close)
					base = hs.URL + "/v2/"
				} else {
					var primer *thethings.Client
					srv, primer = setup(t, thethingstest.WithActivationCodes(thethingstest.ActivationCode{Code: "code-1"}),
						thethings.WithRetry(thethings.NoRetries))
					seedNumbers(t, srv, "seeded", 10)
					// Writes before the faults are set advance the
					// emulator's every-Nth counters, so that they hit the
					// operation's first request.
					for i := range sc.prime {
						require.NoError(t, primer.Write(context.Background(), intValues("primer", i, 1)))
					}
					srv.SetFaults(sc.faults)
					base = srv.URL()
				}
				bc := &bodyCounter{rt: http.DefaultTransport.(*http.Transport).Clone()}
				t.Cleanup(bc.rt.CloseIdleConnections)
				timeout := sc.timeout
				if timeout == 0 {
					timeout = 5 * time.Second
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				opts := []thethings.Option{thethings.WithBaseURL(base), thethings.WithHTTPClient(bc.httpClient()),
					thethings.WithStreamHTTPClient(&http.Client{Transport: bc}), fastRetry}
				c, err := thethings.NewClient(token, opts...)
				require.NoError(t, err)
				err = op(ctx, c, opts)
				if err != nil {
					assert.True(t, strings.HasPrefix(err.Error(), "thethings:"), "%v", err)
				}
				assert.Zero(t, bc.open(), "response bodies left open (of %d); error: %v", bc.returned.Load(), err)
				if !sc.silent {
					assert.NotZero(t, bc.returned.Load(), "no response went through the counter")
				}
			})
		}
	}
}
