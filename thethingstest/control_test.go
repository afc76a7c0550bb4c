package thethingstest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ctl sends a control request; path is relative to ControlPrefix.
func (e *env) ctl(method, path, body string) response {
	e.t.Helper()
	if body == "" {
		return e.do(method, ControlPrefix+path, body)
	}
	return e.do(method, ControlPrefix+path, body, "Content-Type", "application/json")
}

// ctlAs sends a control request as a browser might: with the given Host
// and Content-Type.
func (e *env) ctlAs(host, method, path, body, contentType string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, "http://"+e.addr+ControlPrefix+path, strings.NewReader(body))
	require.NoError(e.t, err)
	req.Host = host
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.client.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return response{resp.StatusCode, resp.Header, b}
}

func TestControlAPIAnswersOnlyItsOwnAddress(t *testing.T) {
	e := setup(t, nil, WithThingTokens("secret-token"), WithControlAPI())
	_, port, err := net.SplitHostPort(e.addr)
	require.NoError(t, err)
	for _, host := range []string{e.addr, "localhost:" + port, "LOCALHOST:" + port, "[::1]:" + port} {
		assert.Equal(t, http.StatusOK, e.ctlAs(host, "GET", "", "", "").status, host)
	}
	// A page on evil.example whose name now resolves to 127.0.0.1 (DNS
	// rebinding) sends its own name as Host.
	for _, host := range []string{"evil.example", "evil.example:" + port, "127.0.0.1:1", "localhost", "10.0.0.1:" + port} {
		r := e.ctlAs(host, "GET", "", "", "")
		assert.Equal(t, http.StatusForbidden, r.status, "Host %q", host)
		assert.NotContains(t, string(r.body), "secret-token", host)
		r = e.ctlAs(host, "PUT", "faults", `{"every503":1}`, "application/json")
		assert.Equal(t, http.StatusForbidden, r.status, "Host %q", host)
	}
	assert.Equal(t, Faults{}, e.srv.Faults())
	// The platform's paths answer any Host, as the platform does.
	r := e.ctlAs("evil.example", "GET", "", "", "")
	assert.Equal(t, http.StatusForbidden, r.status)
	req, err := http.NewRequest("GET", e.base+"things/secret-token/resources/k", nil)
	require.NoError(t, err)
	req.Host = "evil.example"
	resp, err := e.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "resource not found, not forbidden")
}

func TestControlAPITakesOnlyJSON(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"), WithControlAPI())
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/jsonx"} {
		r := e.ctlAs(e.addr, "PUT", "faults", `{"every503":1}`, ct)
		assert.Equal(t, http.StatusUnsupportedMediaType, r.status, "Content-Type %q", ct)
	}
	assert.Equal(t, Faults{}, e.srv.Faults())
	r := e.ctlAs(e.addr, "PUT", "faults", `{"every503":1}`, "application/json; charset=utf-8")
	assert.Equal(t, http.StatusOK, r.status, string(r.body))
	assert.Equal(t, Faults{Every503: 1}, e.srv.Faults())
}

func TestControlAPIOffByDefault(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"))
	r := e.ctl("GET", "", "")
	assert.Equal(t, http.StatusNotFound, r.status)
	assert.Equal(t, 404, e.ctl("PUT", "faults", `{"every503":1}`).status)
	assert.Equal(t, Faults{}, e.srv.Faults())
	assert.Equal(t, 2, e.srv.Requests(RouteOther), "counted as unknown paths")
}

func TestControlAPI(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok", "other"), WithControlAPI())
	sub := e.subscribe("tok", "?keepAlive=10000")
	sub.mustChunk(5 * time.Second)
	e.mustWrite("tok", `{"values":[{"key":"t","value":1,"datetime":"2020-01-01T00:00:00Z","geo":{"lat":1.5,"long":2}},{"key":"t","value":{"a":[1]},"datetime":"2020-01-01T00:00:01Z"},{"key":"h","value":"x","datetime":"2020-01-01T00:00:01Z"}]}`)
	e.mustWrite("tok", `{"values":[{"key":"t","value":1,"datetime":"2020-01-01T00:00:00Z"}]}`)
	e.get("things/tok/resources/t")

	var state struct {
		Tokens            []string
		Requests          map[string]int
		Duplicates        int
		OpenSubscriptions int
	}
	r := e.ctl("GET", "", "")
	require.Equal(t, 200, r.status, string(r.body))
	assert.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.NoError(t, json.Unmarshal(r.body, &state))
	assert.Equal(t, []string{"tok", "other"}, state.Tokens)
	assert.Equal(t, map[string]int{"root": 0, "activate": 0, "write": 2, "read": 1, "subscribe": 1, "date": 0, "other": 0,
		"resources": 0, "firmwares": 0, "firmware-download": 0, "function": 0}, state.Requests)
	assert.Equal(t, 1, state.Duplicates)
	assert.Equal(t, 1, state.OpenSubscriptions)

	assert.JSONEq(t, `{"root":0,"activate":0,"write":2,"read":1,"subscribe":1,"date":0,"other":0,"resources":0,"firmwares":0,"firmware-download":0,"function":0}`, string(e.ctl("GET", "requests", "").body), "control requests are not counted")
	assert.JSONEq(t, `{"duplicates":1}`, string(e.ctl("GET", "duplicates", "").body))
	assert.JSONEq(t, `{"open":1}`, string(e.ctl("GET", "subscriptions", "").body))
	assert.JSONEq(t, `["h","t"]`, string(e.ctl("GET", "keys?token=tok", "").body))
	assert.JSONEq(t, `[]`, string(e.ctl("GET", "keys?token=nope", "").body))
	r = e.ctl("GET", "stored?token=tok&key=t", "")
	require.Equal(t, 200, r.status)
	assert.JSONEq(t, `{"count":3,"values":[
		{"key":"t","value":{"a":[1]},"datetime":"2020-01-01T00:00:01.000Z"},
		{"key":"t","value":1,"datetime":"2020-01-01T00:00:00.000Z"},
		{"key":"t","value":1,"datetime":"2020-01-01T00:00:00.000Z","geo":{"lat":1.5,"long":2}}]}`, string(r.body))
	assert.JSONEq(t, `{"count":0,"values":[]}`, string(e.ctl("GET", "stored?token=tok&key=none", "").body))
	assert.JSONEq(t, `{"count":0,"values":[]}`, string(e.ctl("GET", "stored?token=nope&key=t", "").body))
	assert.Equal(t, 400, e.ctl("GET", "stored?token=tok", "").status)
	assert.Equal(t, 400, e.ctl("GET", "keys", "").status)
	assert.Equal(t, 404, e.ctl("GET", "nothing", "").status)
	r = e.ctl("POST", "requests", "")
	assert.Equal(t, 405, r.status)
	assert.Equal(t, "GET", r.header.Get("Allow"))
	assert.Equal(t, "GET, PUT", e.ctl("DELETE", "faults", "").header.Get("Allow"))

	// Faults: read, replace, refuse.
	assert.JSONEq(t, `{}`, string(e.ctl("GET", "faults", "").body))
	r = e.ctl("PUT", "faults", `{"storeThenFailEvery":1,"storeThenFailStatus":504,"storeThenFailRetryAfter":"2s","latency":"1ms","noRetryAfter":true}`)
	require.Equal(t, 200, r.status, string(r.body))
	want := Faults{StoreThenFailEvery: 1, StoreThenFailStatus: 504, StoreThenFailRetryAfter: 2 * time.Second, Latency: time.Millisecond, NoRetryAfter: true}
	assert.Equal(t, want, e.srv.Faults())
	assert.JSONEq(t, `{"storeThenFailEvery":1,"storeThenFailStatus":504,"storeThenFailRetryAfter":"2s","latency":"1ms","noRetryAfter":true}`, string(r.body))
	w := e.post("things/tok", `{"values":[{"key":"t","value":9}]}`)
	assert.Equal(t, 504, w.status)
	assert.Equal(t, "2", w.header.Get("Retry-After"))
	assert.Equal(t, 200, e.ctl("GET", "", "").status, "no fault applies to control requests")
	for _, bad := range []string{
		`{"storeThenFailStatus":501}`, `{"every503":-1}`, `{"latency":5}`, `{"latency":"soon"}`,
		`{"every5O3":1}`, `not json`,
	} {
		r := e.ctl("PUT", "faults", bad)
		assert.Equal(t, 400, r.status, bad)
		assert.Contains(t, string(r.body), `"status":"error"`)
	}
	assert.Equal(t, want, e.srv.Faults(), "a refused PUT changes nothing")
	require.Equal(t, 200, e.ctl("PUT", "faults", `{}`).status)
	assert.Equal(t, Faults{}, e.srv.Faults())

	// Every field round-trips.
	all := Faults{Latency: 1, Every503: 2, Every429: 3, RetryAfter: 4, NoRetryAfter: true, DropBeforeBodyEvery: 5,
		DropEvery: 6, DropStores: true, StoreThenFailEvery: 7, StoreThenFailStatus: 500, StoreThenFailRetryAfter: 8,
		StreamCutAfter: 9, StopKeepAlives: true, SplitFrames: true, CoalesceFrames: true}
	b, err := json.Marshal(all)
	require.NoError(t, err)
	r = e.ctl("PUT", "faults", string(b))
	require.Equal(t, 200, r.status, string(r.body))
	assert.Equal(t, all, e.srv.Faults())
	assert.Equal(t, 15, strings.Count(string(b), ":"), "every field named")
	var back Faults
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, all, back)
	assert.Error(t, json.Unmarshal([]byte(`{"bogus":1}`), &back))
}

// TestControlStoredCostsItsAnswer: the ground truth of a long series is
// encoded from the store, not copied record by record first.
func TestControlStoredCostsItsAnswer(t *testing.T) {
	s, err := New(WithThingTokens("tok"), WithControlAPI())
	require.NoError(t, err)
	defer s.Close()
	recs := make([]Record, 100_000)
	for i := range recs {
		recs[i] = Record{Value: json.RawMessage(`21.5`), Datetime: time.UnixMilli(int64(i)), Geo: &Geo{Lat: 1.5, Long: 2}}
	}
	require.NoError(t, s.Seed("tok", "k", recs...))
	req := httptest.NewRequest("GET", "http://127.0.0.1:80"+ControlPrefix+"stored?token=tok&key=k", nil)
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}))
	w := httptest.NewRecorder()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s.Handler().ServeHTTP(w, req)
	runtime.ReadMemStats(&after)
	n := after.TotalAlloc - before.TotalAlloc
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	var got struct {
		Count  int
		Values []json.RawMessage
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
	assert.Equal(t, 100_000, got.Count)
	assert.Len(t, got.Values, 100_000)
	assert.JSONEq(t, `{"key":"k","value":21.5,"datetime":"1970-01-01T00:01:39.999Z","geo":{"lat":1.5,"long":2}}`, string(got.Values[0]))
	t.Logf("%d MiB allocated for a %d MiB answer", n>>20, w.Body.Len()>>20)
	// About 2x (the answer and the recorder's copy), 3x under -race;
	// copying the records first cost 8x.
	assert.Less(t, n, 4*uint64(w.Body.Len()), "allocated %d bytes for a %d-byte answer", n, w.Body.Len())
}
