package thethings_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
)

// operations drives every public call that carries the thing token.
var operations = map[string]func(ctx context.Context, c *thethings.Client) error{
	"ServerTime": func(ctx context.Context, c *thethings.Client) error {
		_, err := c.ServerTime(ctx)
		return err
	},
	"Write": func(ctx context.Context, c *thethings.Client) error {
		return c.Write(ctx, []thethings.Value{{Key: "temp", Value: 1}})
	},
	"Writer": func(ctx context.Context, c *thethings.Client) error {
		w, err := c.NewWriter()
		if err != nil {
			return err
		}
		if err := w.Add(ctx, thethings.Value{Key: "temp", Value: 1}); err != nil {
			return err
		}
		// A dial failure keeps the values buffered for retries until
		// Close's context ends.
		ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		return w.Close(ctx)
	},
	"Read": func(ctx context.Context, c *thethings.Client) error {
		_, err := c.Read(ctx, "temp", nil)
		return err
	},
	"Values": func(ctx context.Context, c *thethings.Client) error {
		for _, err := range c.Values(ctx, "temp", nil) {
			if err != nil {
				return err
			}
		}
		return nil
	},
	"Location": func(ctx context.Context, c *thethings.Client) error {
		_, err := c.Location(ctx)
		return err
	},
	"SetSetting": func(ctx context.Context, c *thethings.Client) error {
		return c.SetSetting(ctx, "a.b", 1)
	},
	"Subscribe": func(ctx context.Context, c *thethings.Client) error {
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		for _, err := range c.Subscribe(ctx, thethings.WithReconnect(1)) {
			if err != nil {
				return err
			}
		}
		return ctx.Err() // the sequence ends silently when ctx ends
	},
}

// TestTokenNeverLeaks drives each operation through every error path with a
// sentinel token and checks that the token appears in no error text and no
// log line.
func TestTokenNeverLeaks(t *testing.T) {
	t.Parallel()
	echo := func(code int, retryAfter string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(code)
			// The platform echoes the token in some messages.
			fmt.Fprintf(w, `{"status":"error","code":%d,"message":"Thing with thing token '%s' not found. path %s"}`, code, sentinelToken, r.URL.String())
		}
	}
	closedPort := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr + "/v2/"
	}
	paths := map[string]func(t *testing.T) (baseURL string, hc *http.Client){
		"dial failure": func(t *testing.T) (string, *http.Client) { return closedPort(t), nil },
		"timeout": func(t *testing.T) (string, *http.Client) {
			block := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-block:
				case <-r.Context().Done():
				}
			}))
			t.Cleanup(func() { close(block); srv.Close() })
			return srv.URL + "/v2/", &http.Client{Timeout: 20 * time.Millisecond}
		},
		"4xx": func(t *testing.T) (string, *http.Client) {
			srv := httptest.NewServer(echo(404, ""))
			t.Cleanup(srv.Close)
			return srv.URL + "/v2/", nil
		},
		"5xx": func(t *testing.T) (string, *http.Client) {
			srv := httptest.NewServer(echo(500, ""))
			t.Cleanup(srv.Close)
			return srv.URL + "/v2/", nil
		},
		"retries exhausted": func(t *testing.T) (string, *http.Client) {
			srv := httptest.NewServer(echo(503, "0"))
			t.Cleanup(srv.Close)
			return srv.URL + "/v2/", nil
		},
	}
	for pathName, setup := range paths {
		for opName, op := range operations {
			t.Run(pathName+"/"+opName, func(t *testing.T) {
				t.Parallel()
				base, hc := setup(t)
				var logs bytes.Buffer
				opts := []thethings.Option{
					thethings.WithBaseURL(base),
					thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 2, MinWait: time.Millisecond, MaxWait: 2 * time.Millisecond}),
					thethings.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
				}
				if hc != nil {
					opts = append(opts, thethings.WithHTTPClient(hc))
				}
				c, err := thethings.NewClient(sentinelToken, opts...)
				require.NoError(t, err)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err = op(ctx, c)
				require.Error(t, err)
				for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), logs.String()} {
					assert.NotContains(t, s, sentinelToken)
				}
				writes := opName == "Write" || opName == "Writer" || opName == "SetSetting"
				retried := pathName == "dial failure" || pathName == "retries exhausted" || pathName == "5xx" && !writes
				if retried && opName != "Subscribe" {
					assert.NotEmpty(t, logs.String(), "retries are logged when a logger is set")
				}
			})
		}
	}
}

// TestSilentByDefault: without WithLogger the SDK writes nothing to stderr
// or stdout, even while it retries and fails. Not parallel: it swaps
// os.Stderr and os.Stdout.
func TestSilentByDefault(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	oldErr, oldOut := os.Stderr, os.Stdout
	os.Stderr, os.Stdout = w, w
	_, c := setup(t, srv.URL,
		thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 2, MinWait: time.Millisecond, MaxWait: time.Millisecond}))
	for name, op := range operations {
		require.Error(t, op(context.Background(), c), name)
	}
	os.Stderr, os.Stdout = oldErr, oldOut
	require.NoError(t, w.Close())
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Empty(t, string(out))
}
