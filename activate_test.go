package thethings_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
)

func TestActivateRequest(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		product  string
		wantBody string
	}{
		"without product": {"", `{"activationCode":"CODE-1"}`},
		"with product":    {"prod-9", `{"activationCode":"CODE-1","productId":"prod-9"}`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mt := httpmock.NewMockTransport()
			mt.RegisterNoResponder(httpmock.NewNotFoundResponder(t.Fatal))
			mt.RegisterResponder(http.MethodPost, "https://api.thethings.io/v2/things/",
				func(r *http.Request) (*http.Response, error) {
					body, _ := io.ReadAll(r.Body)
					assert.JSONEq(t, tc.wantBody, string(body))
					assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
					assert.Equal(t, "application/json", r.Header.Get("Accept"))
					assert.Contains(t, r.Header.Get("User-Agent"), "my-device/1.0 thethings-go/")
					return httpmock.NewStringResponse(201, `{"status":"created","message":"thing activated","thingToken":"rFffsL4kcMuaKzJ5UEwqrry5kg5g9hyGWt0T2QP9wLVzw","thingId":"XTNsdG1MGWGZQ-gX7nJzm9cBoEDeDk24NylhazQAwN8"}`), nil
				})
			c, err := thethings.Activate(context.Background(), "CODE-1", tc.product,
				thethings.WithHTTPClient(&http.Client{Transport: mt}), thethings.WithUserAgent("my-device/1.0"))
			require.NoError(t, err)
			assert.Equal(t, "rFffsL4kcMuaKzJ5UEwqrry5kg5g9hyGWt0T2QP9wLVzw", c.ThingToken())
			assert.Equal(t, "XTNsdG1MGWGZQ-gX7nJzm9cBoEDeDk24NylhazQAwN8", c.ThingID())
			assert.Equal(t, 1, mt.GetTotalCallCount())
		})
	}
}

func TestActivateErrors(t *testing.T) {
	t.Parallel()
	_, err := thethings.Activate(context.Background(), " ", "")
	assert.ErrorIs(t, err, thethings.ErrInvalidValue)

	_, err = thethings.Activate(context.Background(), "c", "", thethings.WithBaseURL("ftp://x"))
	assert.ErrorIs(t, err, thethings.ErrInvalidOption)

	cases := map[string]struct {
		responder httpmock.Responder
		is        []error
		calls     int
	}{
		"unknown code": {
			httpmock.NewStringResponder(400, `{"status":"error","message":"activation code not found"}`),
			[]error{thethings.ErrActivationCodeNotFound}, 1,
		},
		"connection lost after send": {
			httpmock.NewErrorResponder(io.ErrUnexpectedEOF),
			[]error{thethings.ErrOutcomeUnknown, io.ErrUnexpectedEOF}, 1,
		},
		"500 is never retried": {
			httpmock.NewStringResponder(500, `{"status":"error","message":"boom"}`),
			nil, 1,
		},
		"429 is never retried": {
			httpmock.NewStringResponder(429, `{"status":"error","message":"slow down"}`).HeaderSet(http.Header{"Retry-After": {"1"}}),
			[]error{thethings.ErrRateLimited}, 1,
		},
		"created without token": {
			httpmock.NewStringResponder(201, `{"status":"created"}`),
			[]error{thethings.ErrOutcomeUnknown}, 1,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mt := httpmock.NewMockTransport()
			mt.RegisterResponder(http.MethodPost, "https://api.thethings.io/v2/things/", tc.responder)
			c, err := thethings.Activate(context.Background(), "CODE", "",
				thethings.WithHTTPClient(&http.Client{Transport: mt}),
				thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 3, MinWait: time.Millisecond, MaxWait: time.Millisecond}))
			require.Error(t, err)
			assert.Nil(t, c)
			for _, target := range tc.is {
				assert.ErrorIs(t, err, target)
			}
			assert.Equal(t, tc.calls, mt.GetTotalCallCount(), "activation is not repeated once sent")
			var apiErr *thethings.APIError
			if errors.As(err, &apiErr) {
				assert.Equal(t, "/v2/things/", apiErr.Path)
				assert.Equal(t, http.MethodPost, apiErr.Method)
			}
		})
	}
}

func TestAPIErrorFields(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	mt.RegisterResponder(http.MethodGet, "=~^https://api.thethings.io/v2/utils/date",
		httpmock.NewStringResponder(429, `{"status":"error","code":429,"message":"Too many requests"}`).HeaderSet(http.Header{"Retry-After": {"1"}}))
	_, err := c.ServerTime(context.Background())
	var apiErr *thethings.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 429, apiErr.StatusCode)
	assert.Equal(t, "error", apiErr.Status)
	assert.Equal(t, 429, apiErr.Code)
	assert.Equal(t, "Too many requests", apiErr.Message)
	assert.Equal(t, time.Second, apiErr.RetryAfter)
	assert.Equal(t, "/v2/utils/date", apiErr.Path)
	assert.ErrorIs(t, err, thethings.ErrRateLimited)
	assert.Equal(t, 4, mt.GetTotalCallCount(), "reads are retried on 429")
	assert.Regexp(t, `^thethings: GET /v2/utils/date: 429 Too Many Requests: Too many requests`, err.Error())

	// A huge non-JSON error body is read only up to a bound and summarised.
	mt2 := httpmock.NewMockTransport()
	_, c2 := setup(t, mt2, thethings.WithRetry(thethings.NoRetries))
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = 'x'
	}
	mt2.RegisterResponder(http.MethodGet, "=~utils/date", httpmock.NewBytesResponder(502, big))
	_, err = c2.ServerTime(context.Background())
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, 502, apiErr.StatusCode)
	assert.Less(t, len(apiErr.Message), 300)
	assert.Equal(t, 1, mt2.GetTotalCallCount(), "NoRetries disables retries")
}

func TestPathEscaping(t *testing.T) {
	t.Parallel()
	for _, token := range []string{"a/b", "..", "x?y=1#z", "%2F", "ü+ß"} {
		mt := httpmock.NewMockTransport()
		var seen string
		mt.RegisterNoResponder(func(r *http.Request) (*http.Response, error) {
			seen = r.URL.EscapedPath() + "?" + r.URL.RawQuery
			return httpmock.NewStringResponse(200, `{"date":1}`), nil
		})
		c, err := thethings.NewClient(token, thethings.WithHTTPClient(&http.Client{Transport: mt}))
		require.NoError(t, err)
		_, err = c.ServerTime(context.Background())
		require.NoError(t, err)
		assert.Equal(t, "/v2/utils/date", seen[:len("/v2/utils/date")], token)
		var q struct{}
		_ = json.Unmarshal(nil, &q)
	}
}
