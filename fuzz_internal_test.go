package thethings

// Fuzz targets for the parsers of the root package that are not exported:
// the read-page decoder, the platform's error envelope, and the read cursor
// as Client.Read meets it. Seed corpora live in testdata/fuzz/<FuzzName>/.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thethings-go/thethings/internal/cursor"
	"github.com/thethings-go/thethings/internal/wire"
)

// fuzzToken is the thing token of the fuzzed clients. It must never show in
// an error.
const fuzzToken = "FUZZ-TOKEN-7f3a9c2e81d64b05a9e3c7d1f2b4a6e8"

// otherPage is decoded between two decodes of the fuzzed input, to catch
// state that leaks from one page into the next through the reused buffers.
var otherPage = []byte(`[{"key":"k","value":"other","datetime":"2001-02-03T04:05:06.007Z","geo":{"lat":-1,"long":-2}},` +
	`{"key":"k","value":123456,"datetime":"2001-02-03T04:05:06.006Z"}]`)

// FuzzPageDecoder feeds arbitrary bytes to the read-page decoder. It must
// never panic; an error must be a "thethings:" syntax or value error; an
// accepted answer must mean what encoding/json says it means when the input
// is valid JSON, and decoding must not depend on what the decoder's reused
// buffers held before, nor change values it returned for an earlier page.
func FuzzPageDecoder(f *testing.F) {
	for _, s := range []string{
		`[]`, ` [ ] `, `[{"key":"k","value":1,"datetime":"2015-01-30T15:35:33.000Z"}]`,
		`[{"key":"k","value":"9000","datetime":"2015-01-30T15:35:33.000Z","geo":{"lat":41.39,"long":2.15}}]`,
		`[{"value":{"a":[1,2.50,"x"],"b":null},"datetime":"20150130153531","extra":[{"}":"]"}]}]`,
		`[{"key":"k","value":"caf\u00e9 \"q\"","datetime":"2015-01-30T15:35:30+01:00"}]`,
		`[{"key":"other","value":null,"datetime":"2015-01-30T15:35:30Z","geo":null},{"datetime":"20150130T153530","value":true}]`,
		`[{"key":"k","value":-0.5e-3,"datetime":"2015-01-30T15:35:29.1Z"}]`,
		`[{"key":"k","value":1,"datetime":"2015-02-30T15:35:33.000Z"}]`,
		`[{"key":"k","value":01,"datetime":"2015-01-30T15:35:33.000Z"}]`,
		`[{"key":"k","value":1}]`, `[{]`, `{}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fresh pageDecoder
		fresh.key = "k"
		items, vals, err := fresh.decode(b, 10)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "thethings: ") {
				t.Fatalf("error without the package prefix: %v", err)
			}
			if !errors.Is(err, wire.ErrSyntax) && !errors.Is(err, ErrInvalidValue) {
				t.Fatalf("error is neither a syntax nor a value error: %v", err)
			}
		} else {
			checkPage(t, b, items, vals)
		}

		// The same decoder, dirtied by another page, gives the same answer.
		var reused pageDecoder
		reused.key = "k"
		if _, _, err := reused.decode(otherPage, 1000); err != nil {
			t.Fatal(err)
		}
		snapshot := append([]Value(nil), vals...)
		items2, vals2, err2 := reused.decode(b, 1)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("fresh decoder: %v; reused decoder: %v", err, err2)
		}
		if err != nil {
			return
		}
		if len(items) != len(items2) || len(snapshot) != len(vals2) ||
			len(items) > 0 && !reflect.DeepEqual(items, items2) || len(snapshot) > 0 && !reflect.DeepEqual(snapshot, vals2) {
			t.Fatalf("reused decoder differs:\n%#v\n%#v", snapshot, vals2)
		}
		// Decoding another page leaves the values of this one as they were
		// (the slices are reused, what they point to is not).
		if _, _, err := fresh.decode(otherPage, 1000); err != nil {
			t.Fatal(err)
		}
		checkPage(t, b, items, snapshot)
	})
}

// checkPage checks a decoded page against the input's meaning.
func checkPage(t *testing.T, b []byte, items []rawItem, vals []Value) {
	t.Helper()
	if len(items) != len(vals) {
		t.Fatalf("%d items, %d values", len(items), len(vals))
	}
	for i, v := range vals {
		if v.Datetime.Location() != time.UTC {
			t.Fatalf("value %d: datetime %v not in UTC", i, v.Datetime)
		}
		if items[i].ms != v.Datetime.UnixMilli() {
			t.Fatalf("value %d: item ms %d, datetime %v", i, items[i].ms, v.Datetime)
		}
		if v.Geo != nil && (math.IsNaN(v.Geo.Lat) || math.IsNaN(v.Geo.Long)) {
			t.Fatalf("value %d: NaN geo", i)
		}
	}
	// The decoder is lenient with what it skips (the contents of unknown
	// fields, commas between geo fields) and keeps the last non-null geo of
	// an item that repeats it: compare only answers that are valid JSON
	// without repeated field names.
	if !json.Valid(b) {
		return
	}
	// Whether some object in b repeats a field name.
	repeatsNames := func() bool {
		dec := json.NewDecoder(bytes.NewReader(b))
		type frame struct {
			object bool
			names  map[string]bool
			key    bool // the next string token is a field name
		}
		var stack []*frame
		for {
			tok, err := dec.Token()
			if err != nil {
				return false
			}
			var top *frame
			if len(stack) > 0 {
				top = stack[len(stack)-1]
			}
			isName := top != nil && top.object && top.key
			switch v := tok.(type) {
			case json.Delim:
				switch v {
				case '{', '[':
					if top != nil && top.object {
						top.key = true
					}
					stack = append(stack, &frame{object: v == '{', names: map[string]bool{}, key: v == '{'})
				default:
					stack = stack[:len(stack)-1]
				}
				continue
			case string:
				if isName {
					if top.names[v] {
						return true
					}
					top.names[v] = true
					top.key = false
					continue
				}
			}
			if top != nil && top.object {
				top.key = true
			}
		}
	}()
	if repeatsNames {
		return
	}
	// A reference reading with encoding/json, field names matched exactly.
	var ref []map[string]json.RawMessage
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatalf("accepted %q, which encoding/json reads as no array of objects: %v", b, err)
	}
	if len(ref) != len(vals) {
		t.Fatalf("%d values decoded, encoding/json sees %d", len(vals), len(ref))
	}
	for i, m := range ref {
		want := Value{Key: "k"}
		if raw, ok := m["key"]; ok {
			if err := json.Unmarshal(raw, &want.Key); err != nil {
				t.Fatalf("value %d: accepted key %s", i, raw)
			}
		}
		if raw, ok := m["value"]; ok {
			want.Value = decodeAny(raw)
		}
		var s string
		if err := json.Unmarshal(m["datetime"], &s); err != nil {
			t.Fatalf("value %d: accepted datetime %s", i, m["datetime"])
		}
		dt, err := ParseTime(s)
		if err != nil {
			t.Fatalf("value %d: accepted datetime %q that ParseTime refuses: %v", i, s, err)
		}
		want.Datetime = dt
		if raw, ok := m["geo"]; ok && string(raw) != "null" {
			var g map[string]json.RawMessage
			if err := json.Unmarshal(raw, &g); err != nil {
				t.Fatalf("value %d: accepted geo %s", i, raw)
			}
			var lat, long float64
			if json.Unmarshal(g["lat"], &lat) != nil || json.Unmarshal(g["long"], &long) != nil {
				t.Fatalf("value %d: accepted geo %s", i, raw)
			}
			want.Geo = &Geo{Lat: lat, Long: long}
		}
		got := vals[i]
		if got.Key != want.Key || !reflect.DeepEqual(got.Value, want.Value) || !got.Datetime.Equal(want.Datetime) ||
			(got.Geo == nil) != (want.Geo == nil) || got.Geo != nil && *got.Geo != *want.Geo {
			t.Fatalf("value %d of %q:\n got %#v (geo %v)\nwant %#v (geo %v)", i, b, got, got.Geo, want, want.Geo)
		}
	}
}

// FuzzAPIError feeds arbitrary answers to the error-envelope decoder. It
// must never panic or let the thing token through; the error keeps the
// status code and starts with "thethings:", Retry-After is only taken from
// 429 and 503 answers and stays in 0..24h, and a well-formed envelope's
// message (a string, beside a string status if any) is kept as the
// platform sent it.
func FuzzAPIError(f *testing.F) {
	f.Add(404, "", []byte(`{"status":"error","message":"resource not found"}`), uint16(0))
	f.Add(404, "", []byte(`{"status":"error","message":"Thing with thing token '' not found."}`), uint16(38))
	f.Add(429, "2", []byte(`{"status":"error","code":429,"message":"Too Many Requests"}`), uint16(0))
	f.Add(503, "Wed, 21 Oct 2015 07:28:00 GMT", []byte(`{"status":"error","code":"503","message":{"detail":"down"}}`), uint16(0))
	f.Add(400, "-1", []byte(`{"status":"error","message":"activation code not found"}`), uint16(1))
	f.Add(500, "99999999999999999999", []byte("<html>proxy error</html>"), uint16(6))
	f.Add(403, "", []byte(`{"message":"rate limit exceeded"}`), uint16(0))
	f.Add(502, "", []byte(""), uint16(0))
	f.Fuzz(func(t *testing.T, status int, retryAfter string, body []byte, at uint16) {
		status = 100 + int(uint(status)%500)
		// Put the token somewhere in the body: the platform echoes it.
		pos := int(at) % (len(body) + 1)
		body = append(append(append([]byte(nil), body[:pos]...), fuzzToken...), body[pos:]...)
		c, err := NewClient(fuzzToken)
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		resp := &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body))}
		e := c.apiError(resp, http.MethodGet, "/v2/things/***/resources/k")
		if e.StatusCode != status || e.Method != http.MethodGet {
			t.Fatalf("status %d method %q, want %d GET", e.StatusCode, e.Method, status)
		}
		msg := e.Error()
		if !strings.HasPrefix(msg, "thethings: GET /v2/things/***/resources/k: "+strconv.Itoa(status)) {
			t.Fatalf("message %q", msg)
		}
		if strings.Contains(msg, fuzzToken) || strings.Contains(e.Message, fuzzToken) {
			t.Fatalf("token in the error: %q", msg)
		}
		if e.RetryAfter < 0 || e.RetryAfter > 24*time.Hour {
			t.Fatalf("RetryAfter %s", e.RetryAfter)
		}
		if e.RetryAfter != 0 && status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
			t.Fatalf("RetryAfter %s on a %d", e.RetryAfter, status)
		}
		// A well-formed envelope's message is kept, token redacted. As for
		// wire.Envelope, a "status" that is not a string makes the body
		// something other than the platform's envelope.
		var env struct {
			Status  string  `json:"status"`
			Message *string `json:"message"`
		}
		if len(body) <= maxErrorBody && json.Unmarshal(body, &env) == nil && env.Message != nil {
			if want := c.redact(*env.Message); e.Message != want {
				t.Fatalf("message %q, want %q", e.Message, want)
			}
		}
	})
}

// countingReader counts what was read of r.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// An error answer of any size costs at most 64 KiB of reading.
func TestAPIErrorReadsAtMost64KiB(t *testing.T) {
	t.Parallel()
	c, err := NewClient(fuzzToken)
	if err != nil {
		t.Fatal(err)
	}
	r := &countingReader{r: io.LimitReader(infiniteX{}, 100<<20)}
	e := c.apiError(&http.Response{StatusCode: 502, Body: io.NopCloser(r)}, http.MethodGet, "/v2/")
	if r.n > maxErrorBody {
		t.Fatalf("read %d bytes, more than %d", r.n, maxErrorBody)
	}
	if len(e.Message) > 210 {
		t.Fatalf("message of %d bytes", len(e.Message))
	}
}

type infiniteX struct{}

func (infiniteX) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// A plain-text answer is cut at 200 bytes; a token that straddles the cut
// leaves none of its bytes in the error.
func TestAPIErrorTruncationKeepsTokenOut(t *testing.T) {
	t.Parallel()
	c, err := NewClient(fuzzToken)
	if err != nil {
		t.Fatal(err)
	}
	for pad := 150; pad < 200; pad++ {
		body := strings.Repeat("x", pad) + fuzzToken + " not found"
		e := c.apiError(&http.Response{StatusCode: 404, Body: io.NopCloser(strings.NewReader(body))}, http.MethodGet, "/v2/")
		if strings.Contains(e.Error(), fuzzToken[:8]) {
			t.Fatalf("pad %d: token prefix in %q", pad, e.Error())
		}
	}
}

// The envelope's "status" field is kept as sent; it must not carry the
// token either (APIError is printed with %#v or logged field by field).
func TestAPIErrorStatusKeepsTokenOut(t *testing.T) {
	t.Parallel()
	c, err := NewClient(fuzzToken)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"status":"no thing ` + fuzzToken + `","message":"x"}`
	e := c.apiError(&http.Response{StatusCode: 404, Body: io.NopCloser(strings.NewReader(body))}, http.MethodGet, "/v2/")
	if s := fmt.Sprintf("%#v", e); strings.Contains(s, fuzzToken) {
		t.Fatalf("token in %s", s)
	}
}

// cursorTransport answers every read with one value and records the
// requests it saw.
type cursorTransport struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (ct *cursorTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ct.mu.Lock()
	ct.reqs = append(ct.reqs, r)
	ct.mu.Unlock()
	body := `[{"key":"k","value":1,"datetime":"2015-01-30T15:35:33.123Z"}]`
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

// readWithCursor runs Client.Read with a cursor and checks the outcome: an
// error matching ErrInvalidCursor with no request at all, or one request
// whose query the platform can parse.
func readWithCursor(t *testing.T, cur string) {
	t.Helper()
	ct := &cursorTransport{}
	c, err := NewClient(fuzzToken, WithBaseURL("http://127.0.0.1:1/v2/"),
		WithHTTPClient(&http.Client{Transport: ct}), WithRetry(NoRetries))
	if err != nil {
		t.Fatal(err)
	}
	page, err := c.Read(context.Background(), "k", &ReadOptions{Limit: 5, Cursor: cur})
	if err != nil {
		if !errors.Is(err, ErrInvalidCursor) {
			t.Fatalf("cursor %q: error %v, want ErrInvalidCursor", cur, err)
		}
		if len(ct.reqs) != 0 {
			t.Fatalf("cursor %q refused after %d requests", cur, len(ct.reqs))
		}
		if strings.Contains(err.Error(), fuzzToken) {
			t.Fatalf("token in %q", err)
		}
		return
	}
	if len(ct.reqs) != 1 {
		t.Fatalf("cursor %q: %d requests, want 1", cur, len(ct.reqs))
	}
	// A read the platform can parse: the key's path, a limit in 1..1000,
	// dates in ISO 8601 with four-digit years.
	r := ct.reqs[0]
	if want := "/v2/things/" + fuzzToken + "/resources/k"; r.URL.Path != want {
		t.Fatalf("path %q, want %q", r.URL.Path, want)
	}
	q := r.URL.Query()
	for name, vs := range q {
		if len(vs) != 1 {
			t.Fatalf("query %q repeated: %q", name, r.URL.RawQuery)
		}
		switch name {
		case "limit":
			n, err := strconv.Atoi(vs[0])
			if err != nil || n < 1 || n > maxPage {
				t.Fatalf("limit %q", vs[0])
			}
		case "startDate", "endDate":
			if len(vs[0]) != len(isoMillis) {
				t.Fatalf("%s %q is no ISO 8601 date with a four-digit year", name, vs[0])
			}
			if _, err := ParseTime(vs[0]); err != nil {
				t.Fatalf("%s %q: %v", name, vs[0], err)
			}
		default:
			t.Fatalf("unexpected query parameter %q in %q", name, r.URL.RawQuery)
		}
	}
	if page.Next != "" {
		if _, err := cursor.Decode(page.Next); err != nil {
			t.Fatalf("Next %q does not decode: %v", page.Next, err)
		}
	}
}

// FuzzReadCursor hands Client.Read arbitrary cursor strings, tampered
// versions of real ones among the seeds: the answer is ErrInvalidCursor
// before any request, or a read with a well-formed query; never a panic.
func FuzzReadCursor(f *testing.F) {
	f.Add("")
	f.Add("AQ")
	f.Add(cursor.Encode(cursor.State{Key: "k"}))
	f.Add(cursor.Encode(cursor.State{Key: "other"}))
	f.Add(cursor.Encode(cursor.State{Key: "k", HasT: true, T: 1422632133123, Seen: []uint64{42, 42, 7}}))
	f.Add(cursor.Encode(cursor.State{Key: "k", HasT: true, T: 1422632133123, Inclusive: true,
		HasStart: true, Start: 1420070400000, HasEnd: true, End: 1422748800000, Seen: []uint64{1}}))
	f.Fuzz(func(t *testing.T, s string) {
		readWithCursor(t, s)
	})
}

// Datetimes the platform can hold: years 1 to 9999.
const (
	minPlausibleMs = -62135596800000
	maxPlausibleMs = 253402300799999
)

// FuzzReadCursorState builds well-formed cursors (their checksum is right)
// with arbitrary contents inside the datetimes the platform holds, as a
// cursor made by this SDK from any answer would have, and reads with them:
// ErrInvalidCursor or a well-formed request, never a panic. Cursors with
// instants beyond year 9999 are TestReadCursorOutOfRangeInstants.
func FuzzReadCursorState(f *testing.F) {
	f.Add("k", uint8(0), int64(0), int64(0), int64(0), []byte(nil))
	f.Add("k", uint8(1), int64(1422632133123), int64(0), int64(0), []byte("01234567"))
	f.Add("k", uint8(15), int64(1422632133123), int64(1420070400000), int64(1422748800000), []byte("0123456789abcdef"))
	f.Add("k", uint8(6), int64(0), int64(minPlausibleMs), int64(maxPlausibleMs), []byte(nil))
	f.Add("other", uint8(1), int64(5), int64(0), int64(0), []byte(nil))
	f.Fuzz(func(t *testing.T, key string, flags uint8, tm, start, end int64, seen []byte) {
		plausible := func(ms int64) int64 {
			span := uint64(maxPlausibleMs - minPlausibleMs + 1)
			return minPlausibleMs + int64(uint64(ms)%span)
		}
		st := cursor.State{Key: key, HasT: flags&1 != 0, Inclusive: flags&8 != 0, HasStart: flags&2 != 0, HasEnd: flags&4 != 0}
		if st.HasT {
			st.T = plausible(tm)
			for i := 0; i+8 <= len(seen) && len(st.Seen) < 64; i += 8 {
				st.Seen = append(st.Seen, uint64(seen[i])<<56|uint64(seen[i+7]))
			}
		}
		if st.HasStart {
			st.Start = plausible(start)
		}
		if st.HasEnd {
			st.End = plausible(end)
		}
		readWithCursor(t, cursor.Encode(st))
	})
}

// TestReadCursorOutOfRangeInstants: a cursor whose checksum is right but
// whose instants lie outside the years 1..9999 (or overflow: T+1 for T at
// the int64 maximum) is refused with ErrInvalidCursor, rather than sent as
// a read with a date the platform cannot parse.
func TestReadCursorOutOfRangeInstants(t *testing.T) {
	for _, st := range []cursor.State{
		{Key: "k", HasT: true, T: math.MaxInt64},
		{Key: "k", HasT: true, T: maxPlausibleMs + 1},
		{Key: "k", HasStart: true, Start: math.MinInt64},
		{Key: "k", HasEnd: true, End: -1 << 62},
	} {
		t.Run(fmt.Sprint(st.T, st.Start, st.End), func(t *testing.T) {
			readWithCursor(t, cursor.Encode(st))
		})
	}
}

// TestReadOptionsOutOfRangeInstants: Start and End beyond what the platform
// can parse (years 1..9999) are bad options, refused before any I/O.
func TestReadOptionsOutOfRangeInstants(t *testing.T) {
	for _, o := range []ReadOptions{
		{Start: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{End: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		ct := &cursorTransport{}
		c, err := NewClient(fuzzToken, WithHTTPClient(&http.Client{Transport: ct}), WithRetry(NoRetries))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Read(context.Background(), "k", &o)
		if !errors.Is(err, ErrInvalidOption) || len(ct.reqs) != 0 {
			t.Errorf("%+v: %v after %d requests, want ErrInvalidOption before any", o, err, len(ct.reqs))
		}
	}
}
