package thethingstest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings/internal/testkit"
)

// TestStatusAndBodies checks every endpoint's answers, errors included.
func TestStatusAndBodies(t *testing.T) {
	const ct = "application/json"
	big := `{"values":[{"key":"k","value":"` + strings.Repeat("x", 2048) + `"}]}`
	tests := []struct {
		name     string
		method   string
		path     string
		body     string
		ctype    string // "" = none
		status   int
		wantBody string // exact JSON when set
		contains string // substring of the message when set
		allow    string
	}{
		{name: "root", method: "GET", path: "", status: 401, wantBody: `{"status":"error","code":401,"message":"Invalid session token"}`},
		{name: "root without slash", method: "GET", path: "/v2", status: 401, wantBody: `{"status":"error","code":401,"message":"Invalid session token"}`},
		{name: "root wrong method", method: "POST", path: "", ctype: ct, body: "{}", status: 405, allow: "GET"},
		{name: "unknown route", method: "GET", path: "nope", status: 404, wantBody: `{"status":"error","code":404,"message":"not found"}`},
		{name: "outside v2", method: "GET", path: "/v1/things", status: 404, wantBody: `{"status":"error","code":404,"message":"not found"}`},
		{name: "too deep", method: "GET", path: "things/tok/resources/k/x", status: 404},

		{name: "activate wrong method", method: "GET", path: "things", status: 405, allow: "POST"},
		{name: "activate malformed", method: "POST", path: "things", ctype: ct, body: `{"activationCode":`, status: 400, contains: "JSON"},
		{name: "activate missing code", method: "POST", path: "things", ctype: ct, body: `{"productId":"p"}`, status: 400, contains: "activationCode"},
		{name: "activate unknown code", method: "POST", path: "things", ctype: ct, body: `{"activationCode":"zzz"}`, status: 400, wantBody: `{"status":"error","message":"activation code not found"}`},
		{name: "activate product mismatch", method: "POST", path: "things/", ctype: ct, body: `{"activationCode":"bound","productId":"other"}`, status: 400, wantBody: `{"status":"error","message":"activation code not found"}`},
		{name: "activate 415", method: "POST", path: "things", ctype: "text/plain", body: `{"activationCode":"free"}`, status: 415},

		{name: "write unknown token", method: "POST", path: "things/nope", ctype: ct, body: `{"values":[{"key":"a","value":1}]}`, status: 404, wantBody: `{"status":"error","message":"Thing token doesn't exist"}`},
		{name: "write malformed", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[`, status: 400, contains: "JSON"},
		{name: "write not an object", method: "POST", path: "things/tok", ctype: ct, body: `[1]`, status: 400},
		{name: "write missing values", method: "POST", path: "things/tok", ctype: ct, body: `{}`, status: 400, contains: "values"},
		{name: "write empty values", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[]}`, status: 400, contains: "empty"},
		{name: "write values not array", method: "POST", path: "things/tok", ctype: ct, body: `{"values":{"key":"a"}}`, status: 400},
		{name: "write value not object", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[5]}`, status: 400},
		{name: "write missing key", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"value":1}]}`, status: 400, contains: "key"},
		{name: "write key not string", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":5,"value":1}]}`, status: 400},
		{name: "write missing value", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"a"}]}`, status: 400, contains: "value"},
		{name: "write invalid key", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"bad key!","value":1}]}`, status: 400, contains: `"bad key!"`},
		{name: "write empty key", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"","value":1}]}`, status: 400, contains: `invalid key ""`},
		{name: "write unknown magic", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"$foo","value":1}]}`, status: 400, contains: "$foo"},
		{name: "write empty settings segment", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"$settings..a","value":1}]}`, status: 400, contains: "$settings..a"},
		{name: "write settings trailing dot", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"$settings.","value":1}]}`, status: 400},
		{name: "write settings not object", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"$settings","value":[1]}]}`, status: 400, contains: "object"},
		{name: "write geo lat out of range", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"a","value":1,"geo":{"lat":90.5,"long":0}}]}`, status: 400, contains: "geo"},
		{name: "write geo long out of range", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"a","value":1,"geo":{"lat":0,"long":-180.1}}]}`, status: 400, contains: "geo"},
		{name: "write geo missing long", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"a","value":1,"geo":{"lat":0}}]}`, status: 400, contains: "geo"},
		{name: "write geo not numeric", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"a","value":1,"geo":{"lat":"north","long":2}}]}`, status: 400, contains: "geo"},
		{name: "write $geo bad shape", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"$geo","value":{"type":"Line","coordinates":[1,2]}}]}`, status: 400, contains: "$geo"},
		{name: "write $geo null without geo", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"$geo","value":null}]}`, status: 400, contains: "$geo"},
		{name: "write $geo out of range", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"$geo","value":[200,0]}]}`, status: 400, contains: "range"},
		{name: "write invalid datetime", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"a","value":1,"datetime":"yesterday"}]}`, status: 400, contains: "yesterday"},
		{name: "write datetime bad month", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"a","value":1,"datetime":"20151320130000"}]}`, status: 400, contains: "datetime"},
		{name: "write datetime number", method: "POST", path: "things/tok", ctype: ct, body: `{"values":[{"key":"a","value":1,"datetime":20150520130000}]}`, status: 400, contains: "datetime"},
		{name: "write bad store", method: "POST", path: "things/tok?store=yes", ctype: ct, body: `{"values":[{"key":"a","value":1}]}`, status: 400, contains: "store"},
		{name: "write bad broadcast", method: "POST", path: "things/tok?broadcast=1", ctype: ct, body: `{"values":[{"key":"a","value":1}]}`, status: 400, contains: "broadcast"},
		{name: "write 415", method: "POST", path: "things/tok", ctype: "application/x-www-form-urlencoded", body: `{"values":[{"key":"a","value":1}]}`, status: 415},
		{name: "write charset ok", method: "POST", path: "things/tok", ctype: "application/json; charset=utf-8", body: `{"values":[{"key":"a","value":1}]}`, status: 201, wantBody: `{"status":"created"}`},
		{name: "write no content type ok", method: "POST", path: "things/tok", body: `{"values":[{"key":"a","value":1}]}`, status: 201, wantBody: `{"status":"created"}`},
		{name: "write 413", method: "POST", path: "things/tok", ctype: ct, body: big, status: 413},
		{name: "thing wrong method", method: "PUT", path: "things/tok", ctype: ct, body: "{}", status: 405, allow: "GET, POST"},

		{name: "read unknown token", method: "GET", path: "things/nope/resources/temp", status: 404, wantBody: `{"status":"error","message":"Thing token doesn't exist"}`},
		{name: "read unknown key", method: "GET", path: "things/tok/resources/nothing", status: 404, wantBody: `{"status":"error","message":"resource not found"}`},
		{name: "read invalid key", method: "GET", path: "things/tok/resources/a%20b", status: 404, wantBody: `{"status":"error","message":"resource not found"}`},
		{name: "read ok", method: "GET", path: "things/tok/resources/temp", status: 200, wantBody: `[{"key":"temp","value":21.5,"datetime":"2020-01-02T03:04:05.000Z"}]`},
		{name: "read trailing slash", method: "GET", path: "things/tok/resources/temp/?limit=1", status: 200, wantBody: `[{"key":"temp","value":21.5,"datetime":"2020-01-02T03:04:05.000Z"}]`},
		{name: "read empty window", method: "GET", path: "things/tok/resources/temp?endDate=20000101000000", status: 200, wantBody: `[]`},
		{name: "read limit 0", method: "GET", path: "things/tok/resources/temp?limit=0", status: 400, contains: "limit"},
		{name: "read limit negative", method: "GET", path: "things/tok/resources/temp?limit=-3", status: 400, contains: "limit"},
		{name: "read limit nan", method: "GET", path: "things/tok/resources/temp?limit=ten", status: 400, contains: "limit"},
		{name: "read bad startDate", method: "GET", path: "things/tok/resources/temp?startDate=2015", status: 400, contains: "startDate"},
		{name: "read bad endDate", method: "GET", path: "things/tok/resources/temp?endDate=x", status: 400, contains: "endDate"},
		{name: "read $geo never set", method: "GET", path: "things/tok/resources/$geo", status: 404, wantBody: `{"status":"error","message":"resource not found"}`},
		{name: "read %24geo never set", method: "GET", path: "things/tok/resources/%24geo", status: 404, wantBody: `{"status":"error","message":"resource not found"}`},
		{name: "read $settings never set", method: "GET", path: "things/tok/resources/$settings", status: 200, wantBody: `[{"key":"$settings","value":{}}]`},
		{name: "read $settings path missing", method: "GET", path: "things/tok/resources/$settings.name", status: 404, wantBody: `{"status":"error","message":"resource not found"}`},
		{name: "read wrong method", method: "POST", path: "things/tok/resources/temp", ctype: ct, body: "{}", status: 405, allow: "GET"},

		{name: "subscribe bad keepAlive", method: "GET", path: "things/tok?keepAlive=soon", status: 400, contains: "keepAlive"},
		{name: "subscribe zero keepAlive", method: "GET", path: "things/tok?keepAlive=0", status: 400, contains: "keepAlive"},
		{name: "subscribe unknown token", method: "GET", path: "things/nope", status: 404, wantBody: `{"status":"error","message":"Thing with thing token 'nope' not found."}`},

		{name: "date default", method: "GET", path: "utils/date", status: 200, wantBody: `{"date":"2021-06-07T08:09:10.123Z","values":[{"value":"2021-06-07T08:09:10.123Z"}]}`},
		{name: "date lower-case utc", method: "GET", path: "utils/date?format=utc&thingToken=tok", status: 200, wantBody: `{"date":"2021-06-07T08:09:10.123Z","values":[{"value":"2021-06-07T08:09:10.123Z"}]}`},
		{name: "date unix upper-case", method: "GET", path: "utils/date?format=UNIX_TIMESTAMP", status: 200, wantBody: `{"date":1623053350,"values":[{"value":1623053350}]}`},
		{name: "date bad format", method: "GET", path: "utils/date?format=xml", status: 400, contains: "format"},
		{name: "date unknown thing", method: "GET", path: "utils/date?thingToken=nope", status: 404, wantBody: `{"status":"error","message":"Thing token doesn't exist"}`},
		{name: "date wrong method", method: "DELETE", path: "utils/date", status: 405, allow: "GET"},
	}
	clk := &clock{t: time.Date(2021, 6, 7, 8, 9, 10, 123456e3, time.UTC)}
	e := setup(t, nil, WithThingTokens("tok"), WithClock(clk.Now), WithMaxBodyBytes(1024),
		WithActivationCodes(ActivationCode{Code: "bound", ProductID: "prod"}, ActivationCode{Code: "free"}))
	require.NoError(t, e.srv.Seed("tok", "temp", Record{Value: json.RawMessage(`21.5`), Datetime: time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)}))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if strings.HasPrefix(path, "/") {
				path = "../.." + path // relative to ".../v2/"
			}
			var hdr []string
			if tc.ctype != "" {
				hdr = []string{"Content-Type", tc.ctype}
			}
			req, err := http.NewRequest(tc.method, e.base+path, strings.NewReader(tc.body))
			require.NoError(t, err)
			if tc.body == "" {
				req.Body = nil
			}
			if strings.HasPrefix(tc.path, "/") {
				req.URL.Path = tc.path
			}
			for i := 0; i < len(hdr); i += 2 {
				req.Header.Set(hdr[i], hdr[i+1])
			}
			resp, err := e.client.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			var body json.RawMessage
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&body), "body must be JSON")
			assert.Equal(t, tc.status, resp.StatusCode, string(body))
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			if tc.wantBody != "" {
				assert.JSONEq(t, tc.wantBody, string(body))
			}
			if tc.status >= 400 && tc.wantBody == "" {
				var eb struct {
					Status  string
					Code    int
					Message string
				}
				require.NoError(t, json.Unmarshal(body, &eb))
				assert.Equal(t, "error", eb.Status)
				assert.Equal(t, tc.status, eb.Code)
				assert.NotEmpty(t, eb.Message)
				if tc.contains != "" {
					assert.Contains(t, eb.Message, tc.contains)
				}
			}
			if tc.allow != "" {
				assert.Equal(t, tc.allow, resp.Header.Get("Allow"))
			}
		})
	}
	assert.Equal(t, []string{"a", "temp"}, e.srv.Keys("tok"), "only the two successful writes stored")
	assert.Equal(t, 2, e.srv.StoredCount("tok", "a"))
}

func TestActivation(t *testing.T) {
	e := setup(t, nil, WithThingTokens(), WithActivationCodes(
		ActivationCode{Code: "any"}, ActivationCode{Code: "any2"},
		ActivationCode{Code: "bound", ProductID: "p1"}, ActivationCode{Code: "bound2", ProductID: "p1"}))
	activate := func(body string) response { return e.post("things", body) }
	assert.Equal(t, 201, activate(`{"activationCode":"any"}`).status, "unbound without productId")
	assert.Equal(t, 201, activate(`{"activationCode":"any2","productId":"whatever"}`).status, "unbound with productId")
	assert.Equal(t, 400, activate(`{"activationCode":"bound","productId":"p2"}`).status, "bound, other product")
	assert.Equal(t, 201, activate(`{"activationCode":"bound","productId":"p1"}`).status, "bound, same product")
	assert.Equal(t, 201, activate(`{"activationCode":"bound2"}`).status, "bound, no productId")
	assert.Equal(t, 400, activate(`{"activationCode":"any"}`).status, "codes activate once")
	e.srv.AddActivationCode(ActivationCode{Code: "late"})
	r := activate(`{"activationCode":"late"}`)
	require.Equal(t, 201, r.status)
	var got struct{ ThingToken string }
	require.NoError(t, json.Unmarshal(r.body, &got))
	assert.Len(t, e.srv.Tokens(), 5)
	assert.Contains(t, e.srv.Tokens(), got.ThingToken)
	e.srv.AddThing("zzz-runtime")
	toks := e.srv.Tokens()
	assert.Len(t, toks, 6)
	assert.Equal(t, "zzz-runtime", toks[5], "in the order they became known")
	assert.Equal(t, got.ThingToken, toks[4])
	assert.Equal(t, 7, e.srv.Requests(RouteActivate))
}

func TestWriteIsAllOrNothing(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"))
	sub := e.subscribe("tok", "?keepAlive=10000")
	sub.mustChunk(5 * time.Second)
	r := e.post("things/tok", `{"values":[
		{"key":"a","value":1},
		{"key":"$settings","value":{"x":1}},
		{"key":"$geo","value":[1,2]},
		{"key":"b","value":2,"datetime":"not a date"}]}`)
	require.Equal(t, 400, r.status)
	assert.Contains(t, string(r.body), `values[3]`)
	assert.Empty(t, e.srv.Keys("tok"))
	assert.Empty(t, e.srv.Settings("tok"))
	_, ok := e.srv.Location("tok")
	assert.False(t, ok)
	// Nothing was broadcast either: the next frame is the next good write.
	e.mustWrite("tok", `{"values":[{"key":"c","value":3}]}`)
	var items []item
	require.NoError(t, json.Unmarshal([]byte(sub.data(5*time.Second)), &items))
	require.Len(t, items, 1)
	assert.Equal(t, "c", items[0].Key)
}

func TestValueTypesRoundTrip(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"))
	values := []string{`"9000"`, `9000`, `23.5`, `-1e-7`, `true`, `null`, `[1,"a",{"b":null}]`, `{"nested":{"x":[1,2]}}`, `"ünïcødé \"q\""`}
	for i, v := range values {
		e.mustWrite("tok", fmt.Sprintf(`{"values":[{"key":"v","value": %s ,"datetime":"2020-01-01T00:00:%02dZ"}]}`, v, i))
	}
	items := e.readItems("tok", "v", "?limit=100")
	require.Len(t, items, len(values))
	for i, it := range items {
		assert.JSONEq(t, values[len(values)-1-i], string(it.Value))
	}
	rec := e.srv.Stored("tok", "v")
	assert.Equal(t, `{"nested":{"x":[1,2]}}`, string(rec[1].Value), "stored compact")
}

func TestDatetimeForms(t *testing.T) {
	clk := &clock{t: time.Date(2022, 3, 4, 5, 6, 7, 891234567, time.UTC)}
	e := setup(t, nil, WithThingTokens("tok"), WithClock(clk.Now))
	tests := []struct{ in, want string }{
		{"20150520130000", "2015-05-20T13:00:00.000Z"},
		{"20150520T130000", "2015-05-20T13:00:00.000Z"},
		{"2015-05-20T13:00:00Z", "2015-05-20T13:00:00.000Z"},
		{"2015-05-20T13:00:00.123Z", "2015-05-20T13:00:00.123Z"},
		{"2015-05-20T13:00:00.123456Z", "2015-05-20T13:00:00.123Z"},
		{"2015-05-20T13:00:00.123999", "2015-05-20T13:00:00.123Z"},
		{"2015-05-20T13:00:00", "2015-05-20T13:00:00.000Z"},
		{"2015-05-20T15:00:00.5+02:00", "2015-05-20T13:00:00.500Z"},
		{"2015-05-20T08:00:00-05:00", "2015-05-20T13:00:00.000Z"},
		{"", "2022-03-04T05:06:07.891Z"}, // absent: server clock, truncated to ms
	}
	for i, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			key := fmt.Sprintf("k%d", i)
			dt := ""
			if tc.in != "" {
				dt = fmt.Sprintf(`,"datetime":%q`, tc.in)
			}
			e.mustWrite("tok", fmt.Sprintf(`{"values":[{"key":%q,"value":1%s}]}`, key, dt))
			items := e.readItems("tok", key, "")
			require.Len(t, items, 1)
			assert.Equal(t, tc.want, items[0].Datetime)
			rec := e.srv.Stored("tok", key)
			assert.Equal(t, tc.want, rec[0].Datetime.Format(isoMillis))
			assert.Equal(t, time.UTC, rec[0].Datetime.Location())
		})
	}
	for _, bad := range []string{"2015052013000", "2015-05-20 13:00:00", "2015-05-20T25:00:00Z", "2015-05-20", "20150520T1300", "2015-05-20T13:00:00+2"} {
		r := e.post("things/tok", fmt.Sprintf(`{"values":[{"key":"bad","value":1,"datetime":%q}]}`, bad))
		assert.Equal(t, 400, r.status, bad)
	}
	// The same forms are accepted as read bounds.
	for _, q := range []string{"20150520130000", "20150520T130000", "2015-05-20T13:00:00.000Z", "2015-05-20T13:00:00.000123", "2015-05-20T13:00:00%2B00:00"} {
		items := e.readItems("tok", "k0", "?startDate="+q)
		assert.Len(t, items, 1, q)
	}
}

func TestReadWindowAndOrder(t *testing.T) {
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	seed := func(e *env) {
		var recs []Record
		for i := 0; i < 10; i++ {
			recs = append(recs, Record{Value: json.RawMessage(fmt.Sprint(i)), Datetime: base.Add(time.Duration(i) * time.Second)})
		}
		require.NoError(t, e.srv.Seed("tok", "k", recs...))
	}
	values := func(items []item) string {
		var s []string
		for _, it := range items {
			s = append(s, string(it.Value))
		}
		return strings.Join(s, ",")
	}

	t.Run("endDate exclusive by default", func(t *testing.T) {
		e := setup(t, nil, WithThingTokens("tok"))
		seed(e)
		assert.Equal(t, "9", values(e.readItems("tok", "k", "")), "limit defaults to 1")
		assert.Equal(t, "4,3,2", values(e.readItems("tok", "k", "?limit=10&startDate=20200101000002&endDate=20200101000005")))
		assert.Equal(t, "4,3", values(e.readItems("tok", "k", "?limit=2&endDate=2020-01-01T00:00:05.000Z")))
	})
	t.Run("endDate inclusive switch", func(t *testing.T) {
		e := setup(t, nil, WithThingTokens("tok"), WithEndDateInclusive(true))
		seed(e)
		assert.Equal(t, "5,4,3,2", values(e.readItems("tok", "k", "?limit=10&startDate=20200101000002&endDate=20200101000005")))
		assert.Equal(t, "5,4", values(e.readItems("tok", "k", "?limit=2&endDate=2020-01-01T00:00:05.000Z")))
	})
	t.Run("limit clamp", func(t *testing.T) {
		e := setup(t, nil, WithThingTokens("tok"))
		var recs []Record
		for i := 0; i < 1500; i++ {
			recs = append(recs, Record{Value: json.RawMessage(`1`), Datetime: base.Add(time.Duration(i) * time.Millisecond)})
		}
		require.NoError(t, e.srv.Seed("tok", "k", recs...))
		assert.Len(t, e.readItems("tok", "k", "?limit=5000"), 1000)
		assert.Len(t, e.readItems("tok", "k", "?limit=1000"), 1000)
		assert.Len(t, e.readItems("tok", "k", "?limit=999"), 999)
	})
	t.Run("ties newest inserted first", func(t *testing.T) {
		e := setup(t, nil, WithThingTokens("tok"))
		e.mustWrite("tok", `{"values":[{"key":"k","value":"a","datetime":"20200101000000"},{"key":"k","value":"b","datetime":"20200101000000"}]}`)
		e.mustWrite("tok", `{"values":[{"key":"k","value":"c","datetime":"2020-01-01T00:00:00.000Z"},{"key":"k","value":"z","datetime":"2019-01-01T00:00:00Z"}]}`)
		for i := 0; i < 3; i++ { // deterministic
			assert.Equal(t, `"c","b","a","z"`, values(e.readItems("tok", "k", "?limit=10")))
		}
		var stored []string
		for _, r := range e.srv.Stored("tok", "k") {
			stored = append(stored, string(r.Value))
		}
		assert.Equal(t, []string{`"c"`, `"b"`, `"a"`, `"z"`}, stored, "newest first like a read, ties most recently stored first")
	})
	t.Run("out of order writes", func(t *testing.T) {
		e := setup(t, nil, WithThingTokens("tok"))
		for _, i := range []int{5, 1, 9, 3, 7, 0, 8, 2, 6, 4} {
			e.mustWrite("tok", fmt.Sprintf(`{"values":[{"key":"k","value":%d,"datetime":"2020010100000%d"}]}`, i, i))
		}
		assert.Equal(t, "9,8,7,6,5,4,3,2,1,0", values(e.readItems("tok", "k", "?limit=100")))
		assert.Equal(t, "3,2,1", values(e.readItems("tok", "k", "?limit=3&endDate=20200101000004")))
	})
}

func TestMagicResources(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"))
	geo := func() string { return string(e.get("things/tok/resources/$geo").body) }

	e.mustWrite("tok", `{"values":[{"key":"$geo","value":[2.1,41.3]}]}`)
	assert.JSONEq(t, `[{"key":"$geo","value":{"type":"Point","coordinates":[2.1,41.3]}}]`, geo(), "legacy [long, lat]")
	e.mustWrite("tok", `{"values":[{"key":"$geo","value":null,"geo":{"lat":-33.9,"long":151.2}}]}`)
	assert.JSONEq(t, `[{"key":"$geo","value":{"type":"Point","coordinates":[151.2,-33.9]}}]`, geo(), "null value with geo")
	g, ok := e.srv.Location("tok")
	assert.True(t, ok)
	assert.Equal(t, Geo{Lat: -33.9, Long: 151.2}, g)
	assert.Equal(t, 0, e.srv.StoredCount("tok", "$geo"), "current state, not history")

	// Coordinates as numeric strings, as the Python library sends them.
	e.mustWrite("tok", `{"values":[{"key":"g","value":1,"geo":{"lat":"41.5","long":"-2.25"}}]}`)
	assert.Equal(t, &Geo{Lat: 41.5, Long: -2.25}, e.srv.Stored("tok", "g")[0].Geo)

	e.mustWrite("tok", `{"values":[{"key":"$settings.a.b.c","value":1}]}`)
	e.mustWrite("tok", `{"values":[{"key":"$settings.a.d","value":"x"},{"key":"$settings.n","value":12345678901234567890}]}`)
	assert.JSONEq(t, `[{"key":"$settings","value":{"a":{"b":{"c":1},"d":"x"},"n":12345678901234567890}}]`, string(e.get("things/tok/resources/$settings").body))
	assert.Equal(t, `[{"key":"$settings.n","value":12345678901234567890}]`, string(e.get("things/tok/resources/$settings.n").body), "numbers kept exact")
	assert.JSONEq(t, `[{"key":"$settings.a.b","value":{"c":1}}]`, string(e.get("things/tok/resources/%24settings.a.b").body))
	assert.Equal(t, 404, e.get("things/tok/resources/$settings.a.b.c.d").status)
	assert.Equal(t, map[string]any{"a": map[string]any{"b": map[string]any{"c": 1.0}, "d": "x"}, "n": 12345678901234567890.0}, e.srv.Settings("tok"))

	// A path through a non-object replaces it with an object.
	e.mustWrite("tok", `{"values":[{"key":"$settings.a.d.e","value":true}]}`)
	assert.JSONEq(t, `[{"key":"$settings.a.d","value":{"e":true}}]`, string(e.get("things/tok/resources/$settings.a.d").body))
	// $settings replaces everything.
	e.mustWrite("tok", `{"values":[{"key":"$settings","value":{"only":"this"}}]}`)
	assert.Equal(t, map[string]any{"only": "this"}, e.srv.Settings("tok"))
	// Settings returns a copy.
	e.srv.Settings("tok")["only"] = "changed"
	assert.Equal(t, map[string]any{"only": "this"}, e.srv.Settings("tok"))
	assert.Equal(t, []string{"g"}, e.srv.Keys("tok"), "magic keys are not listed")
}

func TestStoreAndBroadcastSwitches(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"))
	sub := e.subscribe("tok", "?keepAlive=10000")
	sub.mustChunk(5 * time.Second)

	e.mustWrite("tok?store=false", `{"values":[{"key":"k","value":1},{"key":"$settings.x","value":1}]}`)
	assert.Equal(t, 0, e.srv.StoredCount("tok", "k"), "store=false stores nothing")
	assert.Empty(t, e.srv.Settings("tok"), "store=false applies no magic")
	assert.Equal(t, 404, e.get("things/tok/resources/k").status)
	var items []item
	require.NoError(t, json.Unmarshal([]byte(sub.data(5*time.Second)), &items))
	require.Len(t, items, 2, "store=false still broadcasts")

	e.mustWrite("tok?broadcast=false&store=true", `{"values":[{"key":"k","value":2}]}`)
	assert.Equal(t, 1, e.srv.StoredCount("tok", "k"))
	e.mustWrite("tok?broadcast=true", `{"values":[{"key":"k","value":3}]}`)
	require.NoError(t, json.Unmarshal([]byte(sub.data(5*time.Second)), &items))
	require.Len(t, items, 1)
	assert.Equal(t, "3", string(items[0].Value), "the broadcast=false write never reached the stream")
	assert.Equal(t, 2, e.srv.StoredCount("tok", "k"))
}

func TestStreamFrames(t *testing.T) {
	t.Run("items carry datetime and geo", func(t *testing.T) {
		e := setup(t, nil, WithThingTokens("tok"))
		sub := e.subscribe("tok", "?keepAlive=10000")
		sub.mustChunk(5 * time.Second)
		e.mustWrite("tok", `{"values":[{"key":"b","value":2,"datetime":"20200101000000","geo":{"lat":1.5,"long":-2}},{"key":"a","value":"x","datetime":"20200101000001"},{"key":"$geo","value":[3,4],"datetime":"20200101000002"}]}`)
		assert.Equal(t, `[{"key":"b","value":2,"datetime":"2020-01-01T00:00:00.000Z","geo":{"lat":1.5,"long":-2}},`+
			`{"key":"a","value":"x","datetime":"2020-01-01T00:00:01.000Z"},`+
			`{"key":"$geo","value":[3,4],"datetime":"2020-01-01T00:00:02.000Z"}]`, sub.data(5*time.Second), "one frame, request order")
	})
	t.Run("key and value only", func(t *testing.T) {
		e := setup(t, nil, WithThingTokens("tok"), WithStreamItemFields(false))
		sub := e.subscribe("tok", "?keepAlive=10000")
		sub.mustChunk(5 * time.Second)
		e.mustWrite("tok", `{"values":[{"key":"b","value":2,"geo":{"lat":1.5,"long":-2}},{"key":"a","value":"x"}]}`)
		assert.Equal(t, `[{"key":"b","value":2},{"key":"a","value":"x"}]`, sub.data(5*time.Second))
	})
	t.Run("keep-alives", func(t *testing.T) {
		// On the fake clock of a bubble, in memory: the intervals are
		// exact, however loaded the machine.
		synctest.Test(t, func(t *testing.T) {
			e := setup(t, &pipeListener{}, WithThingTokens("tok"), WithDefaultKeepAlive(40*time.Millisecond))
			for _, c := range []struct {
				q     string
				every time.Duration
			}{{"?keepAlive=50", 50 * time.Millisecond}, {"", 40 * time.Millisecond}, {"?keepAlive=99999999999999999", maxKeepAlive}} {
				sub := e.subscribe("tok", c.q)
				sub.mustChunk(5 * time.Second)
				start := time.Now()
				if c.every == maxKeepAlive { // clamped, not overflowed
					_, err := sub.chunk(100 * time.Millisecond)
					var ne net.Error
					assert.ErrorAs(t, err, &ne)
					sub.conn.Close()
					continue
				}
				for i := 1; i <= 3; i++ {
					assert.Equal(t, "{}", sub.mustChunk(2*time.Second))
					assert.Equal(t, time.Duration(i)*c.every, time.Since(start), "%q: keep-alive %d", c.q, i)
				}
				assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
				sub.conn.Close()
			}
		})
	})
	t.Run("many subscribers", func(t *testing.T) {
		e := setup(t, nil, WithThingTokens("tok", "other"))
		var subs []*rawSub
		for i := 0; i < 25; i++ {
			s := e.subscribe("tok", "?keepAlive=10000")
			s.mustChunk(5 * time.Second)
			subs = append(subs, s)
		}
		otherSub := e.subscribe("other", "?keepAlive=60")
		otherSub.mustChunk(5 * time.Second)
		assert.Equal(t, 26, e.srv.OpenSubscriptions())
		e.mustWrite("tok", `{"values":[{"key":"k","value":1,"datetime":"20200101000000"}]}`)
		for _, s := range subs {
			assert.Equal(t, `[{"key":"k","value":1,"datetime":"2020-01-01T00:00:00.000Z"}]`, s.data(5*time.Second))
		}
		assert.Equal(t, "{}", otherSub.mustChunk(2*time.Second), "other things' subscribers get nothing")
	})
	t.Run("ends when the client leaves and on Close", func(t *testing.T) {
		e := setup(t, nil, WithThingTokens("tok"))
		s := e.srv
		a := e.subscribe("tok", "?keepAlive=10000")
		b := e.subscribe("tok", "?keepAlive=10000")
		a.mustChunk(5 * time.Second)
		b.mustChunk(5 * time.Second)
		assert.Equal(t, 2, s.OpenSubscriptions())
		a.conn.Close()
		require.True(t, testkit.Eventually(t, "one subscription", func() bool { return s.OpenSubscriptions() == 1 }))
		require.NoError(t, s.Close())
		assert.Equal(t, 0, s.OpenSubscriptions())
		_, err := b.chunk(2 * time.Second)
		assert.ErrorIs(t, err, errCleanEnd, "Close ends streams cleanly")
		require.NoError(t, s.Close(), "idempotent")
	})
}

func TestSubscriptionQueueOverflow(t *testing.T) {
	sub := &subscription{notify: make(chan struct{}, 1)}
	for i := 0; i < maxQueue; i++ {
		sub.push([]byte("x"))
	}
	frames, overflow := sub.take(nil)
	assert.Len(t, frames, maxQueue)
	assert.False(t, overflow)
	for i := 0; i <= maxQueue; i++ {
		sub.push([]byte("x"))
	}
	frames, overflow = sub.take(frames)
	assert.Len(t, frames, maxQueue)
	assert.True(t, overflow, "a subscriber that falls behind is disconnected")
}

func TestCounters(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"), WithActivationCodes(ActivationCode{Code: "c"}))
	e.get("")
	e.post("things", `{"activationCode":"c"}`)
	e.mustWrite("tok", `{"values":[{"key":"k","value":1,"datetime":"20200101000000"}]}`)
	e.mustWrite("tok", `{"values":[{"key":"k","value":1,"datetime":"20200101000000"},{"key":"k","value":2,"datetime":"20200101000000"},{"key":"k","value":1,"datetime":"20200101000001"}]}`)
	e.mustWrite("tok", `{"values":[{"key":"k","value":{"a":1, "b":2},"datetime":"20200101000002"},{"key":"k","value":{ "a" : 1,"b":2 },"datetime":"20200101000002"},{"key":"other","value":1,"datetime":"20200101000000"}]}`)
	e.post("things/tok", `{"values":[{"key":"k","value":1,"datetime":"bad"}]}`)
	e.get("things/tok/resources/k")
	e.get("things/tok/resources/k")
	e.get("things/tok/resources/$geo")
	e.get("utils/date")
	e.get("nope")
	e.do("DELETE", "things/tok", "")
	s := e.subscribe("tok", "?keepAlive=10000")
	s.mustChunk(5 * time.Second)

	for route, want := range map[Route]int{RouteRoot: 1, RouteActivate: 1, RouteWrite: 4, RouteRead: 3, RouteSubscribe: 1, RouteDate: 1, RouteOther: 2, "bogus": 0} {
		assert.Equal(t, want, e.srv.Requests(route), route)
	}
	assert.Equal(t, 6, e.srv.StoredCount("tok", "k"))
	assert.Equal(t, 1, e.srv.StoredCount("tok", "other"))
	assert.Equal(t, 0, e.srv.StoredCount("nope", "k"))
	assert.Equal(t, 2, e.srv.Duplicates(), "same key, datetime and compact value")
	require.NoError(t, e.srv.Seed("tok", "k", Record{Value: json.RawMessage(`{"a":1,"b":2}`), Datetime: time.Date(2020, 1, 1, 0, 0, 2, 0, time.UTC)}))
	assert.Equal(t, 3, e.srv.Duplicates(), "Seed counts duplicates too")
	assert.Equal(t, 1, e.srv.OpenSubscriptions())
	s.conn.Close()
	require.True(t, testkit.Eventually(t, "no subscriptions", func() bool { return e.srv.OpenSubscriptions() == 0 }))
}

func TestSeed(t *testing.T) {
	clk := &clock{t: time.Date(2020, 1, 1, 0, 0, 0, 123456e3, time.UTC)}
	s, err := New(WithThingTokens("tok"), WithClock(clk.Now))
	require.NoError(t, err)
	defer s.Close()
	assert.Error(t, s.Seed("nope", "k", Record{Value: json.RawMessage(`1`)}))
	assert.Error(t, s.Seed("tok", "$geo", Record{Value: json.RawMessage(`1`)}))
	assert.Error(t, s.Seed("tok", "k", Record{Value: json.RawMessage(`1`)}, Record{Value: json.RawMessage(`{bad`)}))
	assert.Error(t, s.Seed("tok", "k", Record{Value: json.RawMessage(`1`), Geo: &Geo{Lat: 100}}))
	assert.Equal(t, 0, s.StoredCount("tok", "k"), "nothing stored on error")
	g := &Geo{Lat: 1, Long: 2}
	require.NoError(t, s.Seed("tok", "k",
		Record{Value: json.RawMessage(` [ 1, 2 ] `), Geo: g},
		Record{Value: json.RawMessage(`2`), Datetime: time.Date(2019, 1, 1, 1, 0, 0, 999999, time.FixedZone("x", 3600))}))
	g.Lat = 50
	rec := s.Stored("tok", "k")
	require.Len(t, rec, 2)
	assert.Equal(t, Record{Key: "k", Value: json.RawMessage(`2`), Datetime: time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)}, rec[1])
	assert.Equal(t, Record{Key: "k", Value: json.RawMessage(`[1,2]`), Datetime: time.Date(2020, 1, 1, 0, 0, 0, 123e6, time.UTC), Geo: &Geo{Lat: 1, Long: 2}}, rec[0])
	rec[0].Value[0] = 'X'
	assert.Equal(t, `[1,2]`, string(s.Stored("tok", "k")[0].Value), "Stored returns a copy")
	assert.Nil(t, s.Stored("tok", "nothing"))
	assert.Nil(t, s.Keys("nope"))
	assert.Equal(t, "", s.URL(), "not started")
}

func TestPanicsAnswer500(t *testing.T) {
	s, err := New(WithThingTokens("tok"), WithClock(func() time.Time { panic("clock broke") }))
	require.NoError(t, err)
	defer s.Close()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/v2/utils/date")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 500, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var eb errorBody
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&eb))
	assert.Equal(t, errorBody{Status: "error", Code: 500, Message: "internal error"}, eb)
}

func TestServeAndHandler(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	e := setup(t, ln, WithThingTokens("tok")) // which checks that Serve returns nil after Close
	s := e.srv
	assert.Equal(t, "http://"+ln.Addr().String()+"/v2/", s.URL())
	assert.Equal(t, 401, e.get("").status)
	assert.Error(t, s.Start(), "already serving")
	require.NoError(t, s.Close())
	assert.Error(t, s.Start(), "closed")

	// Handler mounted elsewhere: streams still end on Close.
	s2, err := New(WithThingTokens("tok"))
	require.NoError(t, err)
	ts := httptest.NewServer(s2.Handler())
	defer ts.Close()
	sub := (&env{t: t, addr: strings.TrimPrefix(ts.URL, "http://")}).subscribe("tok", "?keepAlive=10000")
	sub.mustChunk(5 * time.Second)
	require.NoError(t, s2.Close())
	_, err = sub.chunk(5 * time.Second)
	assert.ErrorIs(t, err, errCleanEnd)
}
