package thethingstest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests replay every request and response printed in the platform's
// device-development guide, in the guide's order.

var urlSafe43 = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func TestDocSmokeTest(t *testing.T) {
	e := setup(t, nil)
	r := e.do("GET", "", "", "Content-Type", "application/json")
	assert.Equal(t, http.StatusUnauthorized, r.status)
	assert.Equal(t, "application/json", r.header.Get("Content-Type"))
	assert.JSONEq(t, `{"status":"error","code":401,"message":"Invalid session token"}`, string(r.body))
}

func TestDocActivate(t *testing.T) {
	e := setup(t, nil, WithThingTokens(), WithActivationCodes(ActivationCode{Code: "code-1", ProductID: "prod-1"}))
	body := `{"activationCode" : "code-1", "productId":"prod-1"}`
	r := e.post("things/", body)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	var got struct {
		Status, Message, ThingToken, ThingID string
	}
	require.NoError(t, json.Unmarshal(r.body, &got))
	assert.Equal(t, "created", got.Status)
	assert.Equal(t, "thing activated", got.Message)
	assert.Regexp(t, urlSafe43, got.ThingToken)
	assert.Regexp(t, urlSafe43, got.ThingID)
	assert.Equal(t, []string{got.ThingToken}, e.srv.Tokens())
	// The token is usable at once.
	e.mustWrite(got.ThingToken, `{"values":[{"key":"fun","value":"9000"}]}`)

	// Error, 400 Bad request: the code was used.
	r = e.post("things/", body)
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.JSONEq(t, `{"status":"error","message":"activation code not found"}`, string(r.body))
}

func TestDocWrite(t *testing.T) {
	body := `{"values":
    [{
      "key": "fun",
      "value": "9000"
    }]
  }`
	for _, tc := range []struct {
		name   string
		legacy bool
		want   string
	}{
		{"default", false, `{"status":"created"}`},
		{"legacy", true, `{"status":"Success","message":"Created"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, nil, WithThingTokens("TOKEN"), WithLegacyWriteResponse(tc.legacy))
			r := e.post("things/TOKEN", body)
			assert.Equal(t, http.StatusCreated, r.status)
			assert.JSONEq(t, tc.want, string(r.body))
			assert.Equal(t, 1, e.srv.StoredCount("TOKEN", "fun"))
		})
	}
}

func TestDocGeolocatedWrite(t *testing.T) {
	e := setup(t, nil, WithThingTokens("TOKEN"))
	e.mustWrite("TOKEN", `{
    "values":
    [{
      "key": "my-geolocated-key",
      "value" : 23,
      "geo" : {
        "lat" : 41.4121132,
        "long" : 2.2199454
      }
    }]
  }`)
	items := e.readItems("TOKEN", "my-geolocated-key", "")
	require.Len(t, items, 1)
	assert.Equal(t, "23", string(items[0].Value))
	assert.Equal(t, &Geo{Lat: 41.4121132, Long: 2.2199454}, items[0].Geo)
	rec := e.srv.Stored("TOKEN", "my-geolocated-key")
	require.Len(t, rec, 1)
	assert.Equal(t, &Geo{Lat: 41.4121132, Long: 2.2199454}, rec[0].Geo)
}

func TestDocBatchWithDatetimes(t *testing.T) {
	e := setup(t, nil, WithThingTokens("TOKEN"))
	e.mustWrite("TOKEN", `{
    "values":
    [{
      "key": "my-batch-key",
      "value" : 23,
      "datetime" : "20150520130000"
    },
    {
      "key": "my-batch-key",
      "value" : 24,
      "datetime" : "20150520140000"
    },
    {
      "key": "my-batch-key",
      "value" : 25,
      "datetime" : "20150520150000"
    },
    {
      "key": "my-batch-key",
      "value" : 22,
      "datetime" : "20150520120000"
    }]
  }`)
	r := e.get("things/TOKEN/resources/my-batch-key?limit=10")
	assert.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `[
		{"key":"my-batch-key","value":25,"datetime":"2015-05-20T15:00:00.000Z"},
		{"key":"my-batch-key","value":24,"datetime":"2015-05-20T14:00:00.000Z"},
		{"key":"my-batch-key","value":23,"datetime":"2015-05-20T13:00:00.000Z"},
		{"key":"my-batch-key","value":22,"datetime":"2015-05-20T12:00:00.000Z"}]`, string(r.body))
}

func TestDocRead(t *testing.T) {
	clk := &clock{t: time.Date(2015, 1, 30, 15, 35, 33, 0, time.UTC)}
	e := setup(t, nil, WithThingTokens("TOKEN"), WithClock(clk.Now))
	e.mustWrite("TOKEN", `{"values":[{"key":"fun","value":"9000"}]}`)

	r := e.do("GET", "things/TOKEN/resources/fun?limit=10", "", "Accept", "application/json")
	assert.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `[{"key":"fun","value":"9000","datetime":"2015-01-30T15:35:33.000Z"}]`, string(r.body))

	r = e.get("things/NOT-A-TOKEN/resources/fun?limit=10")
	assert.Equal(t, http.StatusNotFound, r.status)
	assert.JSONEq(t, `{"status": "error", "message": "Thing token doesn't exist"}`, string(r.body))

	r = e.get("things/TOKEN/resources/never-written?limit=10")
	assert.Equal(t, http.StatusNotFound, r.status)
	assert.JSONEq(t, `{"status": "error","message": "resource not found"}`, string(r.body))
}

// TestDocPagination walks 2300 values one minute apart with limit=1000,
// using each page's last datetime as the next endDate, as the guide does.
func TestDocPagination(t *testing.T) {
	e := setup(t, nil, WithThingTokens("TOKEN"))
	// Newest value at 2017-01-16T10:25:10.644Z as in the guide; each step
	// back is a minute plus a few ms of jitter.
	newest := time.Date(2017, 1, 16, 10, 25, 10, 644e6, time.UTC)
	const n = 2300
	want := make([]string, n) // newest first
	for batch := 0; batch < n/100; batch++ {
		var sb strings.Builder
		sb.WriteString(`{"values":[`)
		for j := 0; j < 100; j++ {
			i := batch*100 + j
			dt := newest.Add(-time.Duration(i)*time.Minute - time.Duration(i%37)*time.Millisecond)
			want[i] = dt.Format(isoMillis)
			if j > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"key":"temperature","value":%d.5,"datetime":%q}`, i, dt.Format(isoMillis))
		}
		sb.WriteString(`]}`)
		e.mustWrite("TOKEN", sb.String())
	}

	var got []string
	query := "?limit=1000"
	var sizes []int
	for page := 0; page < 10; page++ {
		items := e.readItems("TOKEN", "temperature", query)
		sizes = append(sizes, len(items))
		if len(items) == 0 {
			break
		}
		for _, it := range items {
			got = append(got, it.Datetime)
		}
		query = "?limit=1000&endDate=" + items[len(items)-1].Datetime
	}
	assert.Equal(t, []int{1000, 1000, 300, 0}, sizes)
	assert.Equal(t, want, got, "complete, newest first, no repeats")
	assert.Equal(t, "2017-01-16T10:25:10.644Z", got[0])
}

func TestDocGeoMagic(t *testing.T) {
	e := setup(t, nil, WithThingTokens("THING_TOKEN"))
	r := e.do("POST", "things/THING_TOKEN",
		`{"values":[{"key": "$geo","value" : {"type": "Point","coordinates": [2.154007, 41.390205]}}]}`,
		"Content-Type", "application/json")
	assert.Equal(t, http.StatusCreated, r.status)
	assert.JSONEq(t, `{"status":"created"}`, string(r.body))

	r = e.do("GET", "things/THING_TOKEN/resources/$geo", "", "Accept", "application/json")
	assert.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `[{"key":"$geo","value":{"type":"Point","coordinates":[2.154007,41.390205]}}]`, string(r.body))
	assert.Equal(t, `[{"key":"$geo","value":{"type":"Point","coordinates":[2.154007,41.390205]}}]`, string(r.body), "byte-exact like the guide")
}

func TestDocSettingsMagic(t *testing.T) {
	e := setup(t, nil, WithThingTokens("THING_TOKEN"))
	r := e.do("POST", "things/THING_TOKEN", `{"values":
      [{
          "key": "$settings",
          "value" : {
                  "name": "My Thing",
                  "foo": "bar"
          }
       }]
  }`, "Content-Type", "application/json")
	assert.Equal(t, http.StatusCreated, r.status)
	assert.JSONEq(t, `{"status":"created"}`, string(r.body))
	r = e.do("POST", "things/THING_TOKEN", `{"values":
      [{
          "key": "$settings.name",
          "value" : "My Thing"
        }]
  }`, "Content-Type", "application/json")
	assert.Equal(t, http.StatusCreated, r.status)
	assert.JSONEq(t, `{"status":"created"}`, string(r.body))

	r = e.get("things/THING_TOKEN/resources/$settings")
	assert.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `[{"key":"$settings","value":{"name":"My Thing","foo":"bar"}}]`, string(r.body))
	r = e.get("things/THING_TOKEN/resources/$settings.name")
	assert.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `[{"key":"$settings.name","value":"My Thing"}]`, string(r.body))
}

func TestDocSubscribe(t *testing.T) {
	e := setup(t, nil, WithThingTokens("THING_TOKEN"))
	s := e.subscribe("THING_TOKEN", "")
	assert.Equal(t, http.StatusOK, s.status)
	assert.Equal(t, "chunked", s.header.Get("Transfer-Encoding"))
	assert.Equal(t, "application/json", s.header.Get("Content-Type"))
	assert.JSONEq(t, `{"status":"success", "message":"subscribed"}`, s.mustChunk(5*time.Second))

	bad := e.subscribe("Eyixxxxxxx-xxxxxxxx", "")
	assert.Equal(t, http.StatusNotFound, bad.status)
	assert.JSONEq(t, `{"status":"error", "message":"Thing with thing token 'Eyixxxxxxx-xxxxxxxx' not found."}`, string(bad.body))
}

func TestDocServerDate(t *testing.T) {
	clk := &clock{t: time.Date(2017, 5, 12, 11, 7, 53, 176e6, time.UTC)}
	e := setup(t, nil, WithThingTokens("THING_TOKEN"), WithClock(clk.Now))
	r := e.do("GET", "utils/date?thingToken=THING_TOKEN&format=UTC", "", "Accept", "application/json")
	assert.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `{"date":"2017-05-12T11:07:53.176Z","values":[{"value":"2017-05-12T11:07:53.176Z"}]}`, string(r.body))

	clk.Set(time.Unix(1494587224, 0))
	r = e.get("utils/date?thingToken=THING_TOKEN&format=unix_timestamp")
	assert.Equal(t, http.StatusOK, r.status)
	assert.JSONEq(t, `{"date":1494587224,"values":[{"value":1494587224}]}`, string(r.body))
}
