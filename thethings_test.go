package thethings_test

import (
	"context"
	"errors"
	"net/http"
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
			c, mt := mockClient(t)
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
