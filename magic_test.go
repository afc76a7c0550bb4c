package thethings_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"testing"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

func TestLocationRoundTrip(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx := context.Background()
	_, err := c.Location(ctx)
	assert.ErrorIs(t, err, thethings.ErrResourceNotFound, "never set")
	assert.NotContains(t, err.Error(), sentinelToken)

	require.NoError(t, c.SetLocation(ctx, thethings.Geo{Lat: 41.390205, Long: 2.154007}))
	stored, ok := srv.Location(sentinelToken)
	require.True(t, ok)
	assert.Equal(t, thethingstest.Geo{Lat: 41.390205, Long: 2.154007}, stored)
	g, err := c.Location(ctx)
	require.NoError(t, err)
	assert.Equal(t, thethings.Geo{Lat: 41.390205, Long: 2.154007}, g)

	before := srv.Requests(thethingstest.RouteWrite)
	for _, bad := range []thethings.Geo{{Lat: 90.5}, {Lat: -91}, {Long: 180.1}, {Long: -181}, {Lat: math.NaN()}, {Long: math.Inf(1)}} {
		assert.ErrorIs(t, c.SetLocation(ctx, bad), thethings.ErrInvalidValue, "%+v", bad)
	}
	assert.Equal(t, before, srv.Requests(thethingstest.RouteWrite), "bad positions reached the server")
	require.NoError(t, c.SetLocation(ctx, thethings.Geo{Lat: -90, Long: 180}), "range ends are valid")
}

func TestSetLocationWireFormat(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	var body string
	mt.RegisterResponder(http.MethodPost, "https://api.thethings.io/v2/things/"+sentinelToken, func(r *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		return httpmock.NewStringResponse(201, `{"status":"created"}`), nil
	})
	require.NoError(t, c.SetLocation(context.Background(), thethings.Geo{Lat: 41.390205, Long: 2.154007}))
	assert.JSONEq(t, `{"values":[{"key":"$geo","value":{"type":"Point","coordinates":[2.154007,41.390205]}}]}`, body)
}

func TestLocationForms(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]any{
		`[{"key":"$geo","value":{"type":"Point","coordinates":[2.154007,41.390205]}}]`: thethings.Geo{Lat: 41.390205, Long: 2.154007},
		`[{"key":"$geo","value":[2.5,-3.5]}]`:                                          thethings.Geo{Lat: -3.5, Long: 2.5},
		`[]`:                                                                           thethings.ErrResourceNotFound,
		`[{"key":"$geo","value":{"type":"Polygon","coordinates":[[1,2]]}}]`: thethings.ErrInvalidValue,
		`[{"key":"$geo","value":{"type":"Point","coordinates":[1]}}]`:       thethings.ErrInvalidValue,
		`[{"key":"$geo","value":"here"}]`:                                   thethings.ErrInvalidValue,
	} {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		mt.RegisterResponder(http.MethodGet, "https://api.thethings.io/v2/things/"+sentinelToken+"/resources/$geo",
			httpmock.NewStringResponder(200, body))
		g, err := c.Location(context.Background())
		if wantErr, ok := want.(error); ok {
			assert.ErrorIs(t, err, wantErr, body)
			continue
		}
		require.NoError(t, err, body)
		assert.Equal(t, want, g, body)
	}
}

func TestSettingsRoundTrip(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx := context.Background()
	s, err := c.Settings(ctx)
	require.NoError(t, err)
	assert.Empty(t, s)

	require.NoError(t, c.SetSettings(ctx, map[string]any{"name": "My Thing", "limits": map[string]any{"max": 30.5}, "n": 12345678901234567}))
	s, err = c.Settings(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"name": "My Thing", "limits": map[string]any{"max": json.Number("30.5")}, "n": json.Number("12345678901234567")}, s)

	require.NoError(t, c.SetSetting(ctx, "limits.min", -4))
	require.NoError(t, c.SetSetting(ctx, "name", "Renamed"))
	assert.Equal(t, map[string]any{"name": "Renamed", "limits": map[string]any{"max": 30.5, "min": -4.0}, "n": 12345678901234567.0},
		srv.Settings(sentinelToken))

	var name string
	require.NoError(t, c.Setting(ctx, "name", &name))
	assert.Equal(t, "Renamed", name)
	var limits struct{ Max, Min float64 }
	require.NoError(t, c.Setting(ctx, "limits", &limits))
	assert.Equal(t, struct{ Max, Min float64 }{30.5, -4}, limits)
	var n int64
	require.NoError(t, c.Setting(ctx, "n", &n))
	assert.Equal(t, int64(12345678901234567), n, "no float64 rounding on the way")

	err = c.Setting(ctx, "missing.path", &name)
	assert.ErrorIs(t, err, thethings.ErrResourceNotFound)
	assert.NotContains(t, err.Error(), sentinelToken)
	assert.ErrorIs(t, c.Setting(ctx, "name", &n), thethings.ErrInvalidValue, "a string into an int64")

	require.NoError(t, c.SetSettings(ctx, map[string]any{}), "an empty map clears")
	assert.Empty(t, srv.Settings(sentinelToken))
}

func TestSettingsBadInputBeforeIO(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx := context.Background()
	var dst string
	for _, path := range []string{"", ".", "a.", ".a", "a..b", "a b", "a/b", "$geo", "a?b"} {
		assert.ErrorIs(t, c.Setting(ctx, path, &dst), thethings.ErrInvalidKey, "%q", path)
		assert.ErrorIs(t, c.SetSetting(ctx, path, 1), thethings.ErrInvalidKey, "%q", path)
	}
	for _, bad := range []any{nil, dst, (*string)(nil), map[string]any{}} {
		assert.ErrorIs(t, c.Setting(ctx, "name", bad), thethings.ErrInvalidValue, "%#v", bad)
	}
	assert.ErrorIs(t, c.SetSetting(ctx, "a", math.NaN()), thethings.ErrInvalidValue)
	assert.ErrorIs(t, c.SetSetting(ctx, "a", make(chan int)), thethings.ErrInvalidValue)
	assert.ErrorIs(t, c.SetSettings(ctx, nil), thethings.ErrInvalidValue)
	assert.ErrorIs(t, c.SetSettings(ctx, map[string]any{"x": math.Inf(-1)}), thethings.ErrInvalidValue)
	assert.Zero(t, srv.Requests(thethingstest.RouteRead)+srv.Requests(thethingstest.RouteWrite), "bad input reached the server")
}

func TestMagicWriteOutcome(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		responder httpmock.Responder
		unknown   bool
	}{
		"500":                 {httpmock.NewStringResponder(500, `{"status":"error","message":"boom"}`), true},
		"400":                 {httpmock.NewStringResponder(400, `{"status":"error","message":"bad"}`), false},
		"503 with RetryAfter": {httpmock.NewStringResponder(503, `{}`).HeaderSet(http.Header{"Retry-After": {"1"}}), false},
	}
	t.Run("connection lost after sending", func(t *testing.T) {
		srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{DropEvery: 1}))
		err := c.SetSetting(context.Background(), "a", 1)
		assert.ErrorIs(t, err, thethings.ErrOutcomeUnknown)
		assert.NotContains(t, err.Error(), sentinelToken)
		assert.Equal(t, 1, srv.Requests(thethingstest.RouteWrite))
	})
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			mt := httpmock.NewMockTransport()
			_, c := setup(t, mt, thethings.WithRetry(thethings.NoRetries))
			mt.RegisterResponder(http.MethodPost, "https://api.thethings.io/v2/things/"+sentinelToken, tc.responder)
			for _, err := range []error{
				c.SetLocation(context.Background(), thethings.Geo{Lat: 1, Long: 2}),
				c.SetSettings(context.Background(), map[string]any{"a": 1}),
				c.SetSetting(context.Background(), "a.b", "x"),
			} {
				require.Error(t, err)
				assert.Equal(t, tc.unknown, errors.Is(err, thethings.ErrOutcomeUnknown), err.Error())
				assert.NotContains(t, err.Error(), sentinelToken)
			}
		})
	}
}
