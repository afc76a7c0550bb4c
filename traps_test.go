package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
)

// The tests of this file each pin a v0.2 change that removed a trap users
// fell into with v0.1.

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

func TestRetryPolicyZeroFieldsAreDefaults(t *testing.T) {
	t.Parallel()
	fast := thethings.RetryPolicy{MinWait: time.Millisecond, MaxWait: 2 * time.Millisecond}
	for name, tc := range map[string]struct {
		policy   thethings.RetryPolicy
		requests int32
	}{
		"zero MaxRetries is the default 3": {fast, 4},
		"RetryWrites alone keeps retries":  {thethings.RetryPolicy{RetryWrites: true, MinWait: time.Millisecond, MaxWait: time.Millisecond}, 4},
		"negative MaxRetries is none":      {thethings.RetryPolicy{MaxRetries: -1, MinWait: time.Millisecond}, 1},
		"NoRetries":                        {thethings.NoRetries, 1},
		"explicit":                         {thethings.RetryPolicy{MaxRetries: 1, MinWait: time.Millisecond, MaxWait: time.Millisecond}, 2},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, n := countingServer(t, http.StatusBadGateway, `{"status":"error"}`)
			c, err := thethings.NewClient(sentinelToken, thethings.WithBaseURL(srv.URL), thethings.WithRetry(tc.policy))
			require.NoError(t, err)
			_, err = c.ServerTime(context.Background())
			var ae *thethings.APIError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, tc.requests, n.Load())
		})
	}
}

func TestReadDefaultsToFullPages(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedNumbers(t, srv, "n", 1500)
	page, err := c.Read(context.Background(), "n", nil)
	require.NoError(t, err)
	assert.Len(t, page.Values, 1000, "Read(ctx, key, nil) reads a page of 1000, as Values does")
	assert.NotEmpty(t, page.Next)
	page, err = c.Read(context.Background(), "n", &thethings.ReadOptions{})
	require.NoError(t, err)
	assert.Len(t, page.Values, 1000)
}

func TestValueTextIsNoStringer(t *testing.T) {
	t.Parallel()
	v := thethings.Value{Key: "k", Value: 21.5}
	s, err := v.Text()
	require.NoError(t, err)
	assert.Equal(t, "21.5", s)
	_, isStringer := any(v).(fmt.Stringer)
	assert.False(t, isStringer)
	assert.Contains(t, fmt.Sprintf("%v", v), "21.5", "%v prints the fields")
	_, err = thethings.Value{Key: "k", Value: map[string]any{}}.Text()
	assert.ErrorIs(t, err, thethings.ErrInvalidValue)
}

func TestFailedValuesWalksJoinedErrors(t *testing.T) {
	t.Parallel()
	a := []thethings.Value{{Key: "a", Value: 1}}
	b := []thethings.Value{{Key: "b", Value: 2}, {Key: "b", Value: 3}}
	c := []thethings.Value{{Key: "c", Value: 4}}
	err := fmt.Errorf("flush: %w", errors.Join(
		&thethings.WriteError{Values: a, Unknown: true, Err: thethings.ErrOutcomeUnknown},
		&thethings.WriteError{Values: b, Err: errors.New("refused")},
		errors.Join(errors.New("unrelated"), &thethings.WriteError{Values: c, Err: errors.New("refused")}),
	))
	notWritten, unknown := thethings.FailedValues(err)
	assert.Equal(t, append(append([]thethings.Value{}, b...), c...), notWritten)
	assert.Equal(t, a, unknown)

	notWritten, unknown = thethings.FailedValues(errors.New("no write error"))
	assert.Nil(t, notWritten)
	assert.Nil(t, unknown)
	notWritten, unknown = thethings.FailedValues(nil)
	assert.Nil(t, notWritten)
	assert.Nil(t, unknown)
}

// A split write that fails in its second request: FailedValues finds the
// values of both WriteErrors, where errors.As finds the first only.
func TestFailedValuesOfASplitWrite(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	c, err := thethings.NewClient(sentinelToken, thethings.WithBaseURL(srv.URL), thethings.WithRetry(thethings.NoRetries))
	require.NoError(t, err)
	err = c.Write(context.Background(), numbered(0, 250))
	notWritten, unknown := thethings.FailedValues(err)
	assert.Len(t, unknown, 100, "the second request's values")
	assert.Len(t, notWritten, 50, "the third request's values")
}

func TestTokenWithSpaceIsRefused(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{" ", "abc\n", "abc\r\n", "a b", "\tabc", "abc\x00", "abc\u00a0"} {
		c, err := thethings.NewClient(tok)
		assert.Nil(t, c)
		assert.ErrorIs(t, err, thethings.ErrInvalidToken, "%q", tok)
		if err != nil {
			assert.NotContains(t, err.Error(), "abc")
		}
	}
	_, err := thethings.NewClient("")
	assert.ErrorIs(t, err, thethings.ErrNoToken)

	// A token answered by activation is checked too.
	srv, _ := countingServer(t, http.StatusCreated, `{"status":"created","thingToken":"tok\n","thingId":"x"}`)
	c, err := thethings.Activate(context.Background(), "code", "", thethings.WithBaseURL(srv.URL))
	assert.Nil(t, c)
	assert.ErrorIs(t, err, thethings.ErrInvalidToken)
}

func TestNilContextIsAnError(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t)
	c := emulatorClient(t, srv)
	var ctx context.Context // nil
	vals := []thethings.Value{{Key: "k", Value: 1}}
	calls := map[string]func() error{
		"Write": func() error { return c.Write(ctx, vals) },
		"Read": func() error {
			_, err := c.Read(ctx, "k", nil)
			return err
		},
		"Values": func() error {
			for _, err := range c.Values(ctx, "k", nil) {
				return err
			}
			return nil
		},
		"Subscribe": func() error {
			for _, err := range c.Subscribe(ctx) {
				return err
			}
			return nil
		},
		"Activate": func() error {
			_, err := thethings.Activate(ctx, "code", "", thethings.WithBaseURL(srv.URL()))
			return err
		},
		"ServerTime": func() error {
			_, err := c.ServerTime(ctx)
			return err
		},
		"Location": func() error {
			_, err := c.Location(ctx)
			return err
		},
		"SetLocation": func() error { return c.SetLocation(ctx, thethings.Geo{}) },
		"Settings": func() error {
			_, err := c.Settings(ctx)
			return err
		},
		"Setting": func() error {
			var v any
			return c.Setting(ctx, "a", &v)
		},
		"SetSettings": func() error { return c.SetSettings(ctx, map[string]any{"a": 1}) },
		"SetSetting":  func() error { return c.SetSetting(ctx, "a", 1) },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			var err error
			require.NotPanics(t, func() { err = call() })
			assert.ErrorIs(t, err, thethings.ErrInvalidOption)
		})
	}
	assert.Zero(t, srv.StoredCount(sentinelToken, "k"))
}

// Every error says "thethings:" once, not once per layer.
func TestErrorsSayPrefixOnce(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, http.StatusOK, `{"date":"not a date"}`)
	c, err := thethings.NewClient(sentinelToken, thethings.WithBaseURL(srv.URL), thethings.WithRetry(thethings.NoRetries))
	require.NoError(t, err)
	ctx := context.Background()
	var errs []error
	add := func(err error) {
		require.Error(t, err)
		errs = append(errs, err)
	}
	add(c.Write(ctx, []thethings.Value{{Key: "temp°C", Value: 1}}))
	add(c.Write(ctx, []thethings.Value{{Key: "k", Value: 1, Geo: &thethings.Geo{Lat: 100}}}))
	_, err = c.Read(ctx, "a b", nil)
	add(err)
	_, err = c.Read(ctx, "k", &thethings.ReadOptions{Limit: 5000})
	add(err)
	_, err = c.Read(ctx, "k", &thethings.ReadOptions{Cursor: "garbage"})
	add(err)
	_, err = c.ServerTime(ctx)
	add(err)
	_, err = thethings.NewClient(sentinelToken, thethings.WithBaseURL("ftp://x"))
	add(err)
	add(c.SetSetting(ctx, "a..b", 1))
	bad, _ := countingServer(t, http.StatusOK, `{"status":"success","message":"subscribed"}[{"key":5}]`)
	sub, err := thethings.NewClient(sentinelToken, thethings.WithBaseURL(bad.URL))
	require.NoError(t, err)
	before := len(errs)
	for _, err := range sub.Subscribe(ctx, thethings.WithReconnect(0)) {
		add(err)
	}
	// The malformed item is reported and the stream goes on, until the
	// server closes it.
	require.Len(t, errs, before+2)
	assert.ErrorIs(t, errs[before], thethings.ErrInvalidValue)
	for _, err := range errs {
		assert.Equal(t, 1, strings.Count(err.Error(), "thethings:"), "%q", err)
		assert.True(t, strings.HasPrefix(err.Error(), "thethings: "), "%q", err)
	}
}

// A key error names the character, not the first byte of its encoding.
func TestKeyErrorNamesCharacter(t *testing.T) {
	t.Parallel()
	c, err := thethings.NewClient(sentinelToken)
	require.NoError(t, err)
	err = c.Write(context.Background(), []thethings.Value{{Key: "temp°C", Value: 1}})
	require.ErrorIs(t, err, thethings.ErrInvalidKey)
	assert.Contains(t, err.Error(), `'°'`)
	assert.NotContains(t, err.Error(), "Â")
}
