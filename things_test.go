package thethings_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/thethingstest"
)

const writeURL = "https://api.thethings.io/v2/things/" + sentinelToken

// recordBody registers a POST responder for the write URL that keeps each
// request's body and query and answers status with body.
type recorded struct {
	mu      sync.Mutex
	bodies  []string
	queries []string
	headers []http.Header
}

func (r *recorded) responder(status int, body string) httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.queries = append(r.queries, req.URL.RawQuery)
		r.headers = append(r.headers, req.Header.Clone())
		r.mu.Unlock()
		return httpmock.NewStringResponse(status, body), nil
	}
}

func (r *recorded) Bodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.bodies)
}

func TestWriteRequestShape(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	var rec recorded
	mt.RegisterResponder(http.MethodPost, writeURL, rec.responder(201, `{"status":"created"}`))

	dt := time.Date(2015, 5, 20, 15, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	err := c.Write(context.Background(), []thethings.Value{
		{Key: "fun", Value: 5000, Geo: &thethings.Geo{Lat: 41.4121132, Long: 2.2199454}, Datetime: dt},
		{Key: "temperature", Value: 21.5, Datetime: time.Date(2024, 1, 2, 3, 4, 5, 678_900_000, time.UTC)},
		{Key: "status", Value: "ok"},
	})
	require.NoError(t, err)
	require.Len(t, rec.bodies, 1)
	assert.Equal(t, `{"values":[`+
		`{"key":"fun","value":5000,"geo":{"lat":41.4121132,"long":2.2199454},"datetime":"20150520130000"},`+
		`{"key":"temperature","value":21.5,"datetime":"2024-01-02T03:04:05.678Z"},`+
		`{"key":"status","value":"ok"}]}`, rec.bodies[0])
	assert.Empty(t, rec.queries[0])
	h := rec.headers[0]
	assert.Equal(t, "application/json", h.Get("Content-Type"))
	assert.Equal(t, "application/json", h.Get("Accept"))
	assert.Contains(t, h.Get("User-Agent"), "thethings-go/")
}

func TestWriteStoreAndBroadcastQuery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		opts  []thethings.WriteOption
		query string
	}{
		{"default", nil, ""},
		{"store true", []thethings.WriteOption{thethings.WithStore(true)}, ""},
		{"store false", []thethings.WriteOption{thethings.WithStore(false)}, "store=false"},
		{"broadcast false", []thethings.WriteOption{thethings.WithBroadcast(false)}, "broadcast=false"},
		{"broadcast true", []thethings.WriteOption{thethings.WithBroadcast(true)}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mt := httpmock.NewMockTransport()
			_, c := setup(t, mt)
			var rec recorded
			mt.RegisterResponder(http.MethodPost, writeURL, rec.responder(201, `{"status":"created"}`))
			require.NoError(t, c.Write(context.Background(), []thethings.Value{{Key: "a", Value: 1}}, tc.opts...))
			require.Len(t, rec.queries, 1)
			assert.Equal(t, tc.query, rec.queries[0])
		})
	}

	t.Run("both off", func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		vals := []thethings.Value{{Key: "a", Value: 1}}
		err := c.Write(context.Background(), vals, thethings.WithStore(false), thethings.WithBroadcast(false))
		assert.ErrorIs(t, err, thethings.ErrInvalidOption)
		var we *thethings.WriteError
		require.ErrorAs(t, err, &we)
		assert.Equal(t, vals, we.Values)
		assert.False(t, we.Unknown)
		assert.Zero(t, mt.GetTotalCallCount())
	})
	t.Run("nil option", func(t *testing.T) {
		_, c := setup(t, httpmock.NewMockTransport())
		err := c.Write(context.Background(), []thethings.Value{{Key: "a", Value: 1}}, nil)
		assert.ErrorIs(t, err, thethings.ErrInvalidOption)
	})
}

// TestWriteGoldenEncoding checks the hand-written encoder against
// encoding/json: the body must be byte for byte what encoding/json makes of
// the equivalent structs.
func TestWriteGoldenEncoding(t *testing.T) {
	t.Parallel()
	type wireGeo struct {
		Lat  float64 `json:"lat"`
		Long float64 `json:"long"`
	}
	type wireValue struct {
		Key      string   `json:"key"`
		Value    any      `json:"value"`
		Geo      *wireGeo `json:"geo,omitempty"`
		Datetime string   `json:"datetime,omitempty"`
	}
	type custom struct {
		A string  `json:"a"`
		B []int   `json:"b"`
		C float64 `json:"c"`
	}
	type celsius float64
	values := []any{
		nil, true, false,
		0.0, math.Copysign(0, -1), 1.0, -1.5, 21.5, 0.1, 1e-7, 1.234e-7, 1e20, 1e21, 123456789e300, math.MaxFloat64, math.SmallestNonzeroFloat64,
		float32(0.1), float32(1e-7), float32(3.4e38), float32(16777216),
		0, -1, math.MaxInt64, math.MinInt64, int8(-8), int16(1600), int32(-320000),
		uint(7), uint8(255), uint16(65535), uint32(4294967295), uint64(math.MaxUint64),
		int64(1<<53 + 1), uint64(1<<53 + 1), json.Number("9007199254740993"), json.Number("-1.5e-10"), json.Number(""),
		"", "plain", `quote " and backslash \`, "control \x00\x01\x1f\t\n\r\b\f", "html <b>&amp;</b>",
		"non-BMP 🌍 and é ü 中文", "line sep \u2028 para sep \u2029", "\x7f del", "invalid \xff utf8",
		json.RawMessage(`{"raw":[1,2,{"x":null}]}`), json.RawMessage(`"already encoded"`), json.RawMessage(nil),
		map[string]any{"z": 1, "a": []any{"x", 2.5, nil}}, []int{1, 2, 3}, []string{"a<b"},
		custom{A: "x", B: []int{1}, C: 0.5}, &custom{A: "p"}, celsius(36.6), []byte("bytes"),
		time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	var in []thethings.Value
	var want []wireValue
	for i, v := range values {
		in = append(in, thethings.Value{Key: fmt.Sprintf("k%d", i), Value: v})
		want = append(want, wireValue{Key: fmt.Sprintf("k%d", i), Value: v})
	}
	in = append(in,
		thethings.Value{Key: "$geo", Value: nil, Geo: &thethings.Geo{Lat: -90, Long: 180}},
		thethings.Value{Key: "$settings.a.b", Value: "x"},
		thethings.Value{Key: "g", Value: 1, Geo: &thethings.Geo{Lat: 1e-7, Long: -179.999999}, Datetime: time.Date(1999, 12, 31, 23, 59, 59, 999_999_999, time.UTC)},
	)
	want = append(want,
		wireValue{Key: "$geo", Value: nil, Geo: &wireGeo{-90, 180}},
		wireValue{Key: "$settings.a.b", Value: "x"},
		wireValue{Key: "g", Value: 1, Geo: &wireGeo{1e-7, -179.999999}, Datetime: "1999-12-31T23:59:59.999Z"},
	)
	require.Less(t, len(in), 100, "one request")

	mt := httpmock.NewMockTransport()

	_, c := setup(t, mt)
	var rec recorded
	mt.RegisterResponder(http.MethodPost, writeURL, rec.responder(201, `{"status":"created"}`))
	require.NoError(t, c.Write(context.Background(), in))
	golden, err := json.Marshal(struct {
		Values []wireValue `json:"values"`
	}{want})
	require.NoError(t, err)
	require.Len(t, rec.bodies, 1)
	assert.Equal(t, string(golden), rec.bodies[0])
	assert.True(t, json.Valid([]byte(rec.bodies[0])))

	// The same meaning for a decoder: large integers keep every digit.
	var got struct {
		Values []struct {
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
		} `json:"values"`
	}
	require.NoError(t, json.Unmarshal([]byte(rec.bodies[0]), &got))
	byKey := map[string]string{}
	for _, v := range got.Values {
		byKey[v.Key] = string(v.Value)
	}
	assert.Equal(t, "9223372036854775807", byKey["k22"])
	assert.Equal(t, "18446744073709551615", byKey["k31"])
	assert.Equal(t, "9007199254740993", byKey["k32"])
	assert.Equal(t, "9007199254740993", byKey["k33"])
	assert.Equal(t, "9007199254740993", byKey["k34"])
	assert.Equal(t, `{"raw":[1,2,{"x":null}]}`, byKey["k46"])
}

func TestWriteDatetimeForms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		t    time.Time
		wire string
	}{
		{time.Date(2015, 5, 20, 13, 0, 0, 0, time.UTC), "20150520130000"},
		{time.Date(2015, 5, 20, 8, 0, 0, 0, time.FixedZone("EST", -5*3600)), "20150520130000"},
		{time.Date(2015, 5, 20, 13, 0, 0, 1_000_000, time.UTC), "2015-05-20T13:00:00.001Z"},
		{time.Date(2015, 5, 20, 13, 0, 0, 999_999, time.UTC), "20150520130000"}, // below the platform's millisecond
		{time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), "00010101000001"},
		{time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), "99991231235959"},
	}
	for _, tc := range cases {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		var rec recorded
		mt.RegisterResponder(http.MethodPost, writeURL, rec.responder(201, `{}`))
		require.NoError(t, c.Write(context.Background(), []thethings.Value{{Key: "a", Value: 1, Datetime: tc.t}}))
		assert.Equal(t, `{"values":[{"key":"a","value":1,"datetime":"`+tc.wire+`"}]}`, rec.bodies[0], tc.t.String())
	}
}

func TestWriteValidation(t *testing.T) {
	t.Parallel()
	type cyclic struct{ Self *cyclic }
	loop := &cyclic{}
	loop.Self = loop
	cases := []struct {
		name   string
		bad    thethings.Value
		target error
		msg    string
	}{
		{"empty key", thethings.Value{Key: "", Value: 1}, thethings.ErrInvalidKey, "empty key"},
		{"space in key", thethings.Value{Key: "a b", Value: 1}, thethings.ErrInvalidKey, `"a b"`},
		{"slash in key", thethings.Value{Key: "a/b", Value: 1}, thethings.ErrInvalidKey, `"a/b"`},
		{"unicode key", thethings.Value{Key: "tempé", Value: 1}, thethings.ErrInvalidKey, `"tempé"`},
		{"dollar inside", thethings.Value{Key: "a$b", Value: 1}, thethings.ErrInvalidKey, `"a$b"`},
		{"unknown magic", thethings.Value{Key: "$foo", Value: 1}, thethings.ErrInvalidKey, `"$foo"`},
		{"bad settings path", thethings.Value{Key: "$settings..a", Value: 1}, thethings.ErrInvalidKey, "empty segment"},
		{"NaN", thethings.Value{Key: "t", Value: math.NaN()}, thethings.ErrInvalidValue, "NaN"},
		{"+Inf", thethings.Value{Key: "t", Value: math.Inf(1)}, thethings.ErrInvalidValue, "+Inf"},
		{"-Inf float32", thethings.Value{Key: "t", Value: float32(math.Inf(-1))}, thethings.ErrInvalidValue, "-Inf"},
		{"NaN in map", thethings.Value{Key: "t", Value: map[string]float64{"x": math.NaN()}}, thethings.ErrInvalidValue, "map[string]float64"},
		{"NaN in slice", thethings.Value{Key: "t", Value: []any{1, math.Inf(1)}}, thethings.ErrInvalidValue, "[]interface {}"},
		{"channel", thethings.Value{Key: "t", Value: make(chan int)}, thethings.ErrInvalidValue, "chan int"},
		{"func", thethings.Value{Key: "t", Value: func() {}}, thethings.ErrInvalidValue, "func()"},
		{"cycle", thethings.Value{Key: "t", Value: loop}, thethings.ErrInvalidValue, "cyclic"},
		{"complex", thethings.Value{Key: "t", Value: complex(1, 2)}, thethings.ErrInvalidValue, "complex128"},
		{"bad json.Number", thethings.Value{Key: "t", Value: json.Number("12abc")}, thethings.ErrInvalidValue, "12abc"},
		{"bad raw", thethings.Value{Key: "t", Value: json.RawMessage(`{"a":`)}, thethings.ErrInvalidValue, "RawMessage"},
		{"lat > 90", thethings.Value{Key: "t", Value: 1, Geo: &thethings.Geo{Lat: 90.0001, Long: 0}}, thethings.ErrInvalidValue, "latitude"},
		{"lat < -90", thethings.Value{Key: "t", Value: 1, Geo: &thethings.Geo{Lat: -91, Long: 0}}, thethings.ErrInvalidValue, "latitude"},
		{"long > 180", thethings.Value{Key: "t", Value: 1, Geo: &thethings.Geo{Lat: 0, Long: 180.5}}, thethings.ErrInvalidValue, "longitude"},
		{"long < -180", thethings.Value{Key: "t", Value: 1, Geo: &thethings.Geo{Lat: 0, Long: -181}}, thethings.ErrInvalidValue, "longitude"},
		{"geo NaN", thethings.Value{Key: "t", Value: 1, Geo: &thethings.Geo{Lat: math.NaN(), Long: 0}}, thethings.ErrInvalidValue, "not a number"},
		{"year 10000", thethings.Value{Key: "t", Value: 1, Datetime: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, thethings.ErrInvalidValue, "datetime"},
		{"year 0", thethings.Value{Key: "t", Value: 1, Datetime: time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC)}, thethings.ErrInvalidValue, "datetime"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mt := httpmock.NewMockTransport()
			_, c := setup(t, mt)
			// The bad value sits in the third request of a split write:
			// nothing may be sent at all.
			vals := make([]thethings.Value, 250)
			for i := range vals {
				vals[i] = thethings.Value{Key: "ok", Value: i}
			}
			vals[217] = tc.bad
			err := c.Write(context.Background(), vals)
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.target)
			assert.False(t, errors.Is(err, thethings.ErrOutcomeUnknown))
			var we *thethings.WriteError
			require.ErrorAs(t, err, &we)
			assert.False(t, we.Unknown)
			assert.Len(t, we.Values, 250, "all values are reported unwritten")
			assert.Equal(t, 5, we.Values[5].Value)
			assert.Contains(t, err.Error(), "values[217]")
			assert.Contains(t, err.Error(), fmt.Sprintf("(key %q)", tc.bad.Key))
			assert.Contains(t, err.Error(), tc.msg)
			assert.True(t, strings.HasPrefix(err.Error(), "thethings: "), err.Error())
			assert.Equal(t, 1, strings.Count(err.Error(), "thethings:"), "one prefix: %s", err.Error())
			assert.NotContains(t, err.Error(), sentinelToken)
			assert.Zero(t, mt.GetTotalCallCount(), "no I/O before validation")
		})
	}
}

// TestWriteValidationEmulator: refused values never reach the platform.
func TestWriteValidationEmulator(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	bad := []thethings.Value{
		{Key: "", Value: 1},
		{Key: "a b", Value: 1},
		{Key: "$nope", Value: 1},
		{Key: "t", Value: math.NaN()},
		{Key: "t", Value: math.Inf(-1)},
		{Key: "t", Value: make(chan int)},
		{Key: "t", Value: 1, Geo: &thethings.Geo{Lat: 90.5}},
		{Key: "t", Value: 1, Geo: &thethings.Geo{Long: -180.5}},
		{Key: "t", Value: 1, Datetime: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, b := range bad {
		err := c.Write(context.Background(), []thethings.Value{{Key: "good", Value: 1}, b})
		var we *thethings.WriteError
		require.ErrorAs(t, err, &we, "%+v", b)
		assert.True(t, errors.Is(err, thethings.ErrInvalidKey) || errors.Is(err, thethings.ErrInvalidValue), err.Error())
		assert.Contains(t, err.Error(), "values[1]")
	}
	assert.Zero(t, srv.Requests(thethingstest.RouteWrite))
	assert.Zero(t, srv.StoredCount(sentinelToken, "good"))
}

func TestWriteMagicKeysAccepted(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	var rec recorded
	mt.RegisterResponder(http.MethodPost, writeURL, rec.responder(201, `{"status":"created"}`))
	require.NoError(t, c.Write(context.Background(), []thethings.Value{
		{Key: "$geo", Value: map[string]any{"type": "Point", "coordinates": []float64{2.2, 41.4}}},
		{Key: "$settings", Value: map[string]any{"a": 1}},
		{Key: "$settings.name", Value: "n"},
		{Key: "a.b-c_D9", Value: 1},
	}))
	assert.Len(t, rec.bodies, 1)
}

func TestWriteEmptyIsNoop(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	assert.NoError(t, c.Write(context.Background(), nil))
	assert.NoError(t, c.Write(context.Background(), []thethings.Value{}))
	assert.Zero(t, mt.GetTotalCallCount())
}

func TestWriteSplitsIntoBatches(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	var rec recorded
	mt.RegisterResponder(http.MethodPost, writeURL, rec.responder(201, `{"status":"created"}`))
	vals := make([]thethings.Value, 250)
	for i := range vals {
		vals[i] = thethings.Value{Key: "n", Value: i}
	}
	require.NoError(t, c.Write(context.Background(), vals))
	bodies := rec.Bodies()
	require.Len(t, bodies, 3)
	next := 0
	for i, want := range []int{100, 100, 50} {
		var body struct {
			Values []struct {
				Key   string `json:"key"`
				Value int    `json:"value"`
			} `json:"values"`
		}
		require.NoError(t, json.Unmarshal([]byte(bodies[i]), &body))
		require.Len(t, body.Values, want)
		for _, v := range body.Values {
			assert.Equal(t, next, v.Value, "in order")
			next++
		}
	}
}

func TestWriteSplitFailureFates(t *testing.T) {
	t.Parallel()
	vals := make([]thethings.Value, 350)
	for i := range vals {
		vals[i] = thethings.Value{Key: "n", Value: i}
	}
	// Each case answers one of the four requests with a failure, every
	// other with 201.
	created := httpmock.NewStringResponder(201, `{"status":"created"}`)

	t.Run("refused: failed request and later ones not written", func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		mt.RegisterResponder(http.MethodPost, writeURL,
			created.Then(httpmock.NewStringResponder(400, `{"status":"error","code":400,"message":"bad"}`)).Then(created))
		err := c.Write(context.Background(), vals)
		var we *thethings.WriteError
		require.ErrorAs(t, err, &we)
		assert.False(t, we.Unknown)
		assert.Equal(t, vals[100:], we.Values)
		assert.False(t, errors.Is(err, thethings.ErrOutcomeUnknown))
		var ae *thethings.APIError
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, 400, ae.StatusCode)
		assert.Equal(t, "/v2/things/***", ae.Path)
		assert.Equal(t, 2, mt.GetTotalCallCount(), "nothing sent after the failure")
		assert.NotContains(t, err.Error(), sentinelToken)
	})

	t.Run("unknown: two fates joined", func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		mt.RegisterResponder(http.MethodPost, writeURL,
			created.Then(created).Then(httpmock.NewStringResponder(500, `{"status":"error","code":500,"message":"boom"}`)).Then(created))
		err := c.Write(context.Background(), vals)
		require.Error(t, err)
		assert.ErrorIs(t, err, thethings.ErrOutcomeUnknown)
		joined, ok := err.(interface{ Unwrap() []error })
		require.True(t, ok, "errors.Join")
		errs := joined.Unwrap()
		require.Len(t, errs, 2)
		var first, second *thethings.WriteError
		require.ErrorAs(t, errs[0], &first)
		require.ErrorAs(t, errs[1], &second)
		assert.True(t, first.Unknown)
		assert.Equal(t, vals[200:300], first.Values)
		assert.ErrorIs(t, first, thethings.ErrOutcomeUnknown)
		assert.False(t, second.Unknown)
		assert.Equal(t, vals[300:], second.Values)
		assert.False(t, errors.Is(second, thethings.ErrOutcomeUnknown))
		var as *thethings.WriteError
		require.ErrorAs(t, err, &as)
		assert.Same(t, first, as, "errors.As finds the first")
		assert.Equal(t, 3, mt.GetTotalCallCount(), "an ambiguous write is not retried")
	})

	t.Run("unknown on the last request: one error", func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		mt.RegisterResponder(http.MethodPost, writeURL,
			created.Then(created).Then(created).Then(httpmock.NewStringResponder(502, `bad gateway`)).Then(created))
		err := c.Write(context.Background(), vals)
		var we *thethings.WriteError
		require.ErrorAs(t, err, &we)
		assert.True(t, we.Unknown)
		assert.Equal(t, vals[300:], we.Values)
		_, joined := err.(interface{ Unwrap() []error })
		assert.False(t, joined)
	})

	t.Run("503 without Retry-After is unknown", func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		mt.RegisterResponder(http.MethodPost, writeURL,
			httpmock.NewStringResponder(503, `{"status":"error","message":"overloaded"}`).Then(created))
		err := c.Write(context.Background(), vals[:10])
		var we *thethings.WriteError
		require.ErrorAs(t, err, &we)
		assert.True(t, we.Unknown)
		assert.Equal(t, vals[:10], we.Values)
		assert.Equal(t, 1, mt.GetTotalCallCount())
	})

	t.Run("RetryWrites repeats an ambiguous write", func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt, thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 2, MinWait: time.Millisecond, MaxWait: time.Millisecond, RetryWrites: true}))
		mt.RegisterResponder(http.MethodPost, writeURL, httpmock.NewStringResponder(500, `{}`).Then(created))
		require.NoError(t, c.Write(context.Background(), vals[:10]))
		assert.Equal(t, 2, mt.GetTotalCallCount())
	})

	t.Run("rate limited then accepted", func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		var n int
		var rec recorded
		ok := rec.responder(201, `{"status":"created"}`)
		mt.RegisterResponder(http.MethodPost, writeURL, func(r *http.Request) (*http.Response, error) {
			n++
			if n <= 2 {
				resp := httpmock.NewStringResponse(429, `{"status":"error","message":"Too Many Requests"}`)
				resp.Header.Set("Retry-After", "1")
				return resp, nil
			}
			return ok(r)
		})
		require.NoError(t, c.Write(context.Background(), vals[:3]))
		assert.Equal(t, 3, n)
		assert.Len(t, rec.Bodies(), 1)
	})

	t.Run("rate limited for good", func(t *testing.T) {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt)
		mt.RegisterResponder(http.MethodPost, writeURL, httpmock.NewStringResponder(429, `{"status":"error","message":"Too Many Requests"}`))
		err := c.Write(context.Background(), vals[:3])
		var we *thethings.WriteError
		require.ErrorAs(t, err, &we)
		assert.False(t, we.Unknown)
		assert.ErrorIs(t, err, thethings.ErrRateLimited)
		assert.Equal(t, vals[:3], we.Values)
	})

	t.Run("cancelled context", func(t *testing.T) {
		_, c := setup(t, httpmock.NewMockTransport())
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := c.Write(ctx, vals)
		var we *thethings.WriteError
		require.ErrorAs(t, err, &we)
		assert.ErrorIs(t, err, context.Canceled)
		assert.False(t, we.Unknown)
		assert.Equal(t, vals, we.Values)
	})
}

func TestWriteAnySuccessBody(t *testing.T) {
	t.Parallel()
	for name, resp := range map[string]struct {
		status int
		body   string
	}{
		"created":      {201, `{"status":"created"}`},
		"legacy":       {201, `{"status":"Success","message":"Created"}`},
		"ok":           {200, `[]`},
		"no content":   {204, ``},
		"not json":     {201, `Created / Pushed!`},
		"huge garbage": {201, strings.Repeat("x", 200<<10)},
	} {
		t.Run(name, func(t *testing.T) {
			mt := httpmock.NewMockTransport()
			_, c := setup(t, mt)
			mt.RegisterResponder(http.MethodPost, writeURL, httpmock.NewStringResponder(resp.status, resp.body))
			assert.NoError(t, c.Write(context.Background(), []thethings.Value{{Key: "a", Value: 1}}))
		})
	}
}

func TestWriteErrorMessages(t *testing.T) {
	t.Parallel()
	we := &thethings.WriteError{Values: make([]thethings.Value, 3), Unknown: true, Err: errors.New("thethings: boom")}
	assert.Equal(t, "thethings: 3 values may or may not have been written (outcome unknown): boom", we.Error())
	assert.ErrorIs(t, we, thethings.ErrOutcomeUnknown)
	we = &thethings.WriteError{Values: make([]thethings.Value, 1), Err: thethings.ErrRateLimited}
	assert.Equal(t, "thethings: 1 value not written: rate limited", we.Error())
	assert.False(t, errors.Is(we, thethings.ErrOutcomeUnknown))
	assert.ErrorIs(t, we, thethings.ErrRateLimited)
}

// --- against the emulator ---

func TestWriteEmulatorRoundTrip(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	t1 := time.Date(2015, 5, 20, 13, 0, 0, 0, time.UTC)
	t2 := time.Date(2015, 5, 20, 12, 0, 0, 250_000_000, time.UTC) // older, unsorted, with ms
	vals := []thethings.Value{
		{Key: "temperature", Value: 21.5, Datetime: t1, Geo: &thethings.Geo{Lat: 41.4121132, Long: 2.2199454}},
		{Key: "temperature", Value: 19, Datetime: t2},
		{Key: "label", Value: `say "hi" <b> 🌍`},
		{Key: "big", Value: int64(1<<62 + 1)},
		{Key: "obj", Value: map[string]any{"a": []int{1, 2}}},
		{Key: "raw", Value: json.RawMessage(`{"x":true}`)},
		{Key: "flag", Value: false},
		{Key: "$settings.name", Value: "dev"},
		{Key: "$geo", Value: nil, Geo: &thethings.Geo{Lat: 10, Long: 20}},
	}
	before := time.Now().Add(-time.Second)
	require.NoError(t, c.Write(context.Background(), vals))

	temp := srv.Stored(sentinelToken, "temperature")
	require.Len(t, temp, 2)
	byValue := map[string]thethingstest.Record{}
	for _, r := range temp {
		byValue[string(r.Value)] = r
	}
	assert.True(t, byValue["21.5"].Datetime.Equal(t1))
	require.NotNil(t, byValue["21.5"].Geo)
	assert.Equal(t, 41.4121132, byValue["21.5"].Geo.Lat)
	assert.Equal(t, 2.2199454, byValue["21.5"].Geo.Long)
	assert.True(t, byValue["19"].Datetime.Equal(t2), byValue["19"].Datetime)
	assert.Nil(t, byValue["19"].Geo)

	label := srv.Stored(sentinelToken, "label")
	require.Len(t, label, 1)
	var s string
	require.NoError(t, json.Unmarshal(label[0].Value, &s))
	assert.Equal(t, `say "hi" <b> 🌍`, s)
	assert.False(t, label[0].Datetime.Before(before), "no datetime: server clock")

	assert.Equal(t, "4611686018427387905", string(srv.Stored(sentinelToken, "big")[0].Value))
	assert.JSONEq(t, `{"a":[1,2]}`, string(srv.Stored(sentinelToken, "obj")[0].Value))
	assert.JSONEq(t, `{"x":true}`, string(srv.Stored(sentinelToken, "raw")[0].Value))
	assert.Equal(t, "false", string(srv.Stored(sentinelToken, "flag")[0].Value))
	assert.Equal(t, "dev", srv.Settings(sentinelToken)["name"])
	g, ok := srv.Location(sentinelToken)
	require.True(t, ok)
	assert.Equal(t, thethingstest.Geo{Lat: 10, Long: 20}, g)
	assert.Zero(t, srv.Duplicates())
	assert.Equal(t, 1, srv.Requests(thethingstest.RouteWrite))
}

func TestWriteEmulatorSplit(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	vals := make([]thethings.Value, 1001)
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range vals {
		vals[i] = thethings.Value{Key: "n", Value: i, Datetime: base.Add(time.Duration(i) * time.Millisecond)}
	}
	require.NoError(t, c.Write(context.Background(), vals))
	assert.Equal(t, 11, srv.Requests(thethingstest.RouteWrite))
	stored := srv.Stored(sentinelToken, "n")
	require.Len(t, stored, 1001)
	seen := map[string]bool{}
	for _, r := range stored {
		seen[string(r.Value)] = true
	}
	assert.Len(t, seen, 1001)
}

func TestWriteEmulatorLegacyResponse(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, thethingstest.WithLegacyWriteResponse(true))
	require.NoError(t, c.Write(context.Background(), []thethings.Value{{Key: "a", Value: 1}}))
	assert.Equal(t, 1, srv.StoredCount(sentinelToken, "a"))
}

func TestWriteEmulatorErrors(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)

	t.Run("unknown thing", func(t *testing.T) {
		c, err := thethings.NewClient("no-such-thing-"+sentinelToken[:8], thethings.WithBaseURL(srv.URL()))
		require.NoError(t, err)
		err = c.Write(context.Background(), []thethings.Value{{Key: "a", Value: 1}})
		var we *thethings.WriteError
		require.ErrorAs(t, err, &we)
		assert.False(t, we.Unknown)
		assert.ErrorIs(t, err, thethings.ErrThingNotFound)
		assert.NotContains(t, err.Error(), "no-such-thing")
	})

	t.Run("refused magic value", func(t *testing.T) {
		_, c := setup(t, srv.URL())
		vals := []thethings.Value{{Key: "ok", Value: 1}, {Key: "$geo", Value: "not a point"}}
		err := c.Write(context.Background(), vals)
		var we *thethings.WriteError
		require.ErrorAs(t, err, &we)
		assert.False(t, we.Unknown)
		assert.Equal(t, vals, we.Values)
		var ae *thethings.APIError
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, 400, ae.StatusCode)
		assert.Zero(t, srv.StoredCount(sentinelToken, "ok"), "the platform validates the whole request")
	})

	t.Run("503 without outcome then dropped connection", func(t *testing.T) {
		srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{DropEvery: 1, DropStores: true}))
		vals := []thethings.Value{{Key: "d", Value: 1}}
		err := c.Write(context.Background(), vals)
		var we *thethings.WriteError
		require.ErrorAs(t, err, &we)
		assert.True(t, we.Unknown)
		assert.ErrorIs(t, err, thethings.ErrOutcomeUnknown)
		assert.Equal(t, vals, we.Values)
		assert.Equal(t, 1, srv.Requests(thethingstest.RouteWrite), "an ambiguous write is not retried")
		assert.Equal(t, 1, srv.StoredCount(sentinelToken, "d"))
		assert.NotContains(t, err.Error(), sentinelToken)
	})

	t.Run("503 and 429 are retried", func(t *testing.T) {
		srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{Every503: 1}))
		go func() {
			// Let the first attempts fail, then heal.
			testkit.Eventually(t, "two write attempts", func() bool { return srv.Requests(thethingstest.RouteWrite) >= 2 })
			srv.SetFaults(thethingstest.Faults{})
		}()
		require.NoError(t, c.Write(context.Background(), []thethings.Value{{Key: "r", Value: 1}}))
		assert.Equal(t, 1, srv.StoredCount(sentinelToken, "r"))
		assert.Zero(t, srv.Duplicates())
	})
}

func TestWriteEmulatorStoreAndBroadcast(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	// The thing's raw stream; next yields its frames, keep-alives skipped.
	req, err := http.NewRequestWithContext(testkit.Ctx(t, 0), http.MethodGet, srv.URL()+"things/"+sentinelToken+"?keepAlive=60000", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	next := func() string {
		for {
			var raw json.RawMessage
			require.NoError(t, dec.Decode(&raw))
			if string(raw) != "{}" {
				return string(raw)
			}
		}
	}
	assert.Contains(t, next(), "subscribed")
	ctx := context.Background()

	require.NoError(t, c.Write(ctx, []thethings.Value{{Key: "live", Value: 1}}, thethings.WithStore(false)))
	assert.Contains(t, next(), `"key":"live","value":1`, "broadcast only")
	assert.Zero(t, srv.StoredCount(sentinelToken, "live"), "not stored")

	require.NoError(t, c.Write(ctx, []thethings.Value{{Key: "quiet", Value: 2}}, thethings.WithBroadcast(false)))
	assert.Equal(t, 1, srv.StoredCount(sentinelToken, "quiet"), "stored")
	require.NoError(t, c.Write(ctx, []thethings.Value{{Key: "both", Value: 3}}))
	frame := next()
	assert.Contains(t, frame, `"key":"both"`, "the store-only write was not broadcast")
	assert.NotContains(t, frame, "quiet")
	assert.Equal(t, 1, srv.StoredCount(sentinelToken, "both"))
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
