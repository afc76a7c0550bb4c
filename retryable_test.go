package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
)

// Retryable tells a passing failure from a refusal, for every way a call
// can fail over loopback, with retries off so that each error is the
// first answer's.
func TestRetryable(t *testing.T) {
	t.Parallel()
	statusServer := func(status int, msg string) string {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, `{"status":"error","message":`+strconv.Quote(msg)+`}`)
		}))
		t.Cleanup(ts.Close)
		return ts.URL
	}
	read := func(base string) error {
		_, c := setup(t, base, thethings.WithRetry(thethings.NoRetries))
		_, err := c.Read(t.Context(), "temperature", nil)
		require.Error(t, err)
		return err
	}
	for status, want := range map[int]bool{
		400: false, 401: false, 403: false, 404: false, 408: true, 429: true,
		500: true, 501: false, 502: true, 503: true, 504: true,
	} {
		assert.Equal(t, want, thethings.Retryable(read(statusServer(status, "no"))), "status %d", status)
	}
	assert.True(t, thethings.Retryable(read(statusServer(403, "Rate limit exceeded"))), "a 403 that asks to slow down")

	// Nobody listens: a network failure.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	assert.True(t, thethings.Retryable(read("http://"+addr)), "connection refused")

	// An answer cut mid-way.
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `[{"key":"temperature","value":1`)
	}))
	t.Cleanup(cut.Close)
	cutErr := read(cut.URL)
	assert.ErrorIs(t, cutErr, io.ErrUnexpectedEOF)
	assert.True(t, thethings.Retryable(cutErr), "a cut answer")

	// A write refused for a passing reason is a *WriteError that is
	// retryable; one refused for good is not.
	write := func(base string) error {
		_, c := setup(t, base, thethings.WithRetry(thethings.NoRetries))
		err = c.Write(t.Context(), []thethings.Value{{Key: "k", Value: 1}})
		var we *thethings.WriteError
		require.ErrorAs(t, err, &we)
		return err
	}
	assert.True(t, thethings.Retryable(write(statusServer(429, "slow down"))))
	assert.False(t, thethings.Retryable(write(statusServer(400, "bad"))))

	// What no wait can mend.
	c, err := thethings.NewClient(sentinelToken)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = c.Read(ctx, "temperature", nil)
	assert.False(t, thethings.Retryable(err), "ctx ended: %v", err)
	_, err = c.Read(t.Context(), "bad key", nil)
	assert.False(t, thethings.Retryable(err), "invalid input: %v", err)
	assert.False(t, thethings.Retryable(fmt.Errorf("read: %w", thethings.ErrPaginationStalled)))
	assert.False(t, thethings.Retryable(nil))
	assert.False(t, thethings.Retryable(errors.New("something else")))
}

// Retryable tells a failure that may pass, worth trying again later, from
// a refusal that no retry can change.
func ExampleRetryable() {
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	gone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"status":"error","message":"thing token not found"}`)
	}))
	defer gone.Close()

	for _, base := range []string{busy.URL, gone.URL} {
		c, err := thethings.NewClient("my-thing-token", thethings.WithBaseURL(base), thethings.WithRetry(thethings.NoRetries))
		if err != nil {
			log.Fatal(err)
		}
		_, err = c.Read(context.Background(), "temperature", nil)
		fmt.Println(thethings.Retryable(err), errors.Is(err, thethings.ErrThingNotFound))
	}
	// Output:
	// true false
	// false true
}
