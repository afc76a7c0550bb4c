package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
)

func TestNewClientValidation(t *testing.T) {
	t.Parallel()
	_, err := thethings.NewClient("")
	assert.ErrorIs(t, err, thethings.ErrNoToken)

	bad := map[string]thethings.Option{
		"ftp base":        thethings.WithBaseURL("ftp://example.com/v2/"),
		"no host":         thethings.WithBaseURL("https:///v2/"),
		"query":           thethings.WithBaseURL("https://api.example.com/v2/?x=1"),
		"userinfo":        thethings.WithBaseURL("https://u:p@api.example.com/v2/"),
		"unparsable":      thethings.WithBaseURL("https://api.example.com:bad/"),
		"nil client":      thethings.WithHTTPClient(nil),
		"nil stream":      thethings.WithStreamHTTPClient(nil),
		"stream timeout":  thethings.WithStreamHTTPClient(&http.Client{Timeout: time.Second}),
		"too many retry":  thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 101}),
		"negative wait":   thethings.WithRetry(thethings.RetryPolicy{MinWait: -time.Second}),
		"max below min":   thethings.WithRetry(thethings.RetryPolicy{MinWait: time.Second, MaxWait: time.Millisecond}),
		"empty UA":        thethings.WithUserAgent(" "),
		"multi-line UA":   thethings.WithUserAgent("a\r\nX-Evil: 1"),
		"nil option func": nil,
	}
	for name, opt := range bad {
		t.Run(name, func(t *testing.T) {
			c, err := thethings.NewClient(sentinelToken, opt)
			assert.Nil(t, c)
			assert.ErrorIs(t, err, thethings.ErrInvalidOption)
			assert.NotContains(t, err.Error(), sentinelToken)
		})
	}
}

func TestClientStringHidesToken(t *testing.T) {
	t.Parallel()
	c, err := thethings.NewClient(sentinelToken)
	require.NoError(t, err)
	for _, s := range []string{c.String(), c.GoString()} {
		assert.NotContains(t, s, sentinelToken)
	}
	assert.Equal(t, sentinelToken, c.ThingToken())
	assert.Empty(t, c.ThingID())
}

func TestServerTimeBothFormats(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"UTC":            `{"date":"2017-05-12T11:07:53.176Z","values":[{"value":"2017-05-12T11:07:53.176Z"}]}`,
		"unix_timestamp": `{"date":1494587273,"values":[{"value":1494587273}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			mt := httpmock.NewMockTransport()
			_, c := setup(t, mt)
			mt.RegisterResponder(http.MethodGet, "https://api.thethings.io/v2/utils/date",
				func(r *http.Request) (*http.Response, error) {
					assert.Equal(t, sentinelToken, r.URL.Query().Get("thingToken"))
					assert.Equal(t, "UTC", r.URL.Query().Get("format"))
					assert.Equal(t, "application/json", r.Header.Get("Accept"))
					return httpmock.NewStringResponse(200, body), nil
				})
			got, err := c.ServerTime(context.Background())
			require.NoError(t, err)
			want := time.Date(2017, 5, 12, 11, 7, 53, 0, time.UTC)
			if name == "UTC" {
				want = want.Add(176 * time.Millisecond)
			}
			assert.True(t, want.Equal(got), "got %s", got)
			assert.Equal(t, time.UTC, got.Location())
		})
	}
}

func TestAPIErrorSentinels(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status int
		msg    string
		is     []error
		isNot  []error
	}{
		{401, "Invalid session token", []error{thethings.ErrUnauthorized}, []error{thethings.ErrNotFound}},
		{404, "Thing token doesn't exist", []error{thethings.ErrNotFound, thethings.ErrThingNotFound}, []error{thethings.ErrResourceNotFound}},
		{404, "Thing with thing token '***' not found.", []error{thethings.ErrNotFound, thethings.ErrThingNotFound}, nil},
		{404, "resource not found", []error{thethings.ErrNotFound, thethings.ErrResourceNotFound}, []error{thethings.ErrThingNotFound}},
		{400, "activation code not found", []error{thethings.ErrActivationCodeNotFound, thethings.ErrNotFound}, []error{thethings.ErrUnauthorized}},
		{429, "Too Many Requests", []error{thethings.ErrRateLimited}, []error{thethings.ErrUnauthorized}},
		{403, "rate limit exceeded", []error{thethings.ErrRateLimited}, []error{thethings.ErrUnauthorized}},
		{403, "forbidden", []error{thethings.ErrUnauthorized}, []error{thethings.ErrRateLimited}},
		{500, "boom", nil, []error{thethings.ErrNotFound, thethings.ErrRateLimited, thethings.ErrUnauthorized}},
	}
	for _, tc := range cases {
		e := &thethings.APIError{StatusCode: tc.status, Message: tc.msg}
		for _, target := range tc.is {
			assert.ErrorIs(t, e, target, "%d %s", tc.status, tc.msg)
		}
		for _, target := range tc.isNot {
			assert.False(t, errors.Is(e, target), "%d %s should not be %v", tc.status, tc.msg, target)
		}
	}
}

func TestWithRetryMaxWaitBelowDefaultMinWait(t *testing.T) {
	t.Parallel()
	_, err := thethings.NewClient(sentinelToken, thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 1, MaxWait: 10 * time.Millisecond}))
	assert.NoError(t, err, "an unset MinWait follows a small MaxWait down")
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
			var n atomic.Int32
			_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				n.Add(1)
				w.WriteHeader(http.StatusBadGateway)
				fmt.Fprint(w, `{"status":"error"}`)
			}), thethings.WithRetry(tc.policy))
			_, err := c.ServerTime(context.Background())
			var ae *thethings.APIError
			require.ErrorAs(t, err, &ae)
			assert.Equal(t, tc.requests, n.Load())
		})
	}
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
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"status":"created","thingToken":"tok\n","thingId":"x"}`)
	}))
	t.Cleanup(srv.Close)
	c, err := thethings.Activate(context.Background(), "code", "", thethings.WithBaseURL(srv.URL))
	assert.Nil(t, c)
	assert.ErrorIs(t, err, thethings.ErrInvalidToken)
}

func TestNilContextIsAnError(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
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
