package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseISOMillis(t *testing.T) {
	ok := map[string]time.Time{
		"2026-01-02T03:04:05Z":           time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		"2026-01-02T03:04:05.1Z":         time.Date(2026, 1, 2, 3, 4, 5, 1e8, time.UTC),
		"2026-01-02T03:04:05.123Z":       time.Date(2026, 1, 2, 3, 4, 5, 123e6, time.UTC),
		"2026-01-02T03:04:05.123456789Z": time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC),
		"2024-02-29T23:59:59.999Z":       time.Date(2024, 2, 29, 23, 59, 59, 999e6, time.UTC),
		"2000-02-29T00:00:00.000Z":       time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC),
	}
	for s, want := range ok {
		got, good := ParseISOMillis([]byte(s))
		assert.True(t, good, s)
		assert.Equal(t, want, got, s)
	}
	for _, s := range []string{"2026-01-02T03:04:05", "2026-01-02T03:04:05+01:00", "2025-02-29T00:00:00Z",
		"1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-00-02T03:04:05Z", "2026-01-00T03:04:05Z",
		"2026-13-02T03:04:05Z", "2026-01-02T24:04:05Z", "2026-01-02T03:60:05Z", "2026-01-02T03:04:60Z",
		"2026-01-02T03:04:05.Z", "2026-01-02T03:04:05.1234567890Z", "2026-01-02T03:04:05,123Z",
		"20260102030405", "2026-01-02 03:04:05Z", "2026-0a-02T03:04:05Z", "2026-01-02T03:04:05.12aZ", ""} {
		_, good := ParseISOMillis([]byte(s))
		assert.False(t, good, s)
	}
}

func TestScanPrimitives(t *testing.T) {
	for _, c := range []struct {
		in             string
		end            int // -1: error
		escaped, ascii bool
	}{
		{in: `"abc",`, end: 5, ascii: true},
		{in: `"a\"b"`, end: 6, escaped: true, ascii: true},
		{in: `"é"`, end: 4},
		{in: "\"a\x01\"", end: -1},
		{in: `"abc`, end: -1},
	} {
		end, escaped, ascii, err := ScanString([]byte(c.in), 0)
		if c.end < 0 {
			assert.ErrorIs(t, err, ErrSyntax, c.in)
		} else {
			require.NoError(t, err, c.in)
			assert.Equal(t, []any{c.end, c.escaped, c.ascii}, []any{end, escaped, ascii}, c.in)
		}
	}
	// The end ScanNumber and SkipValue find: -1 for an error, 0 where the
	// input is not one for that scanner.
	for _, c := range []struct {
		in            string
		number, value int
	}{
		{`"abc",`, 0, 5}, {`"a\"b"`, 0, 6}, {`"é"`, 0, 4}, {"\"a\x01\"", 0, -1}, {`"abc`, 0, -1},
		{`0`, 1, 1}, {`-0`, 2, 2}, {`12.5e+3,`, 7, 7}, {`1E9]`, 3, 3}, {`-`, -1, -1}, {`01`, 1, 1},
		{`1.`, -1, -1}, {`.5`, -1, -1}, {`1e`, -1, -1}, {`-a`, -1, -1}, {`1.5e-2}`, 6, 6},
		{`true,`, 0, 4}, {`false`, 0, 5}, {`null]`, 0, 4}, {`nul`, 0, -1}, {`tru`, 0, -1}, {`fals`, 0, -1},
		{`{"a":[1,"}"]},`, 0, 13}, {`[[],{}] `, 0, 7}, {`{"a":"\"}"}`, 0, 11}, {`{"a":1`, 0, -1}, {`[`, 0, -1},
		{`{"a":"` + "\x02" + `"}`, 0, -1}, {``, 0, -1},
	} {
		for _, scan := range []struct {
			name string
			f    func([]byte, int) (int, error)
			want int
		}{{"ScanNumber", ScanNumber, c.number}, {"SkipValue", SkipValue, c.value}} {
			if scan.want == 0 {
				continue
			}
			end, err := scan.f([]byte(c.in), 0)
			if scan.want < 0 {
				assert.ErrorIs(t, err, ErrSyntax, "%s(%q)", scan.name, c.in)
				continue
			}
			assert.NoError(t, err, "%s(%q)", scan.name, c.in)
			assert.Equal(t, scan.want, end, "%s(%q)", scan.name, c.in)
		}
	}
}

// TestScannerPieces feeds values to a Scanner cut at every place: the end
// found must not depend on the cut.
func TestScannerPieces(t *testing.T) {
	for _, v := range []string{`{}`, `[1,[2,{"a":"]}\"\\"}],3]`, `{"x":"\\\\"}`, `{"a":"{[","b":[{}]}`} {
		in := v + ` {"next":1}`
		for cut := 0; cut <= len(in); cut++ {
			var s Scanner
			n1, done := s.Scan([]byte(in[:cut]))
			total := n1
			if !done {
				n2, done2 := s.Scan([]byte(in[cut:]))
				require.True(t, done2, "%q cut at %d", in, cut)
				total += n2
			}
			assert.Equal(t, len(v), total, "%q cut at %d", in, cut)
			_, bad := s.Control()
			assert.False(t, bad)
		}
	}
	var s Scanner
	_, done := s.Scan([]byte("[\"a"))
	assert.False(t, done)
	n, done := s.Scan([]byte("\x01\"]"))
	assert.True(t, done)
	assert.Equal(t, 3, n)
	at, bad := s.Control()
	assert.True(t, bad)
	assert.Equal(t, 3, at)
}

// The platform's usual shape decodes as encoding/json would decode it into
// Item; what is not JSON is an error.
func TestDecodeUsualShape(t *testing.T) {
	geo := &Geo{Lat: 41.39, Long: 2.15}
	for _, c := range []struct {
		in   string
		want []Item // nil: an error
	}{
		{`[]`, []Item{}},
		{` [ {} ] `, []Item{{}}},
		{`[{"key":"a","value":-0.5e3,"datetime":"2026-03-04T05:06:07.089Z","geo":{"lat":41.39,"long":2.15}}]`,
			[]Item{{Key: "a", Value: json.Number("-0.5e3"), Time: time.Date(2026, 3, 4, 5, 6, 7, 89e6, time.UTC), Geo: geo}}},
		{`[{"geo":{ "long" : 2.15 , "lat" : 41.39 },"datetime":null,"value":"x","key":"b"}]`, []Item{{Key: "b", Value: "x", Geo: geo}}},
		{`[{"key":"c","value":"a\"b\u00e9 ✓","datetime":"20260304050607"}]`, []Item{{Key: "c", Value: "a\"bé ✓", RawTime: "20260304050607"}}},
		{`[{"key":"k\u00e9","value":{"a":[1,2.50,{"b":null}]},"geo":null},{"value":true},{"value":false},{"value":null}]`,
			[]Item{{Key: "ké", Value: map[string]any{"a": []any{json.Number("1"), json.Number("2.50"), map[string]any{"b": nil}}}},
				{Value: true}, {Value: false}, {}}},
		{`[{"datetime":"2026-03-04T05:06:07\u002e089Z"}]`, []Item{{RawTime: "2026-03-04T05:06:07.089Z"}}},
		// Not JSON.
		{`[{"key":"a","value":}]`, nil},
		{`[{"key":"a","value":01}]`, nil},
		{`[{"key":"a"},]`, nil},
		{`[{"key":"a"}] x`, nil},
		{`{"key":"a"}`, nil},
		{"[{\"value\":\"\x01\"}]", nil},
		{`[{"value":{"a":}}]`, nil},
		{``, nil},
	} {
		d := Decoder{OptionalTime: true}
		got, err := d.Decode([]byte(c.in), 0)
		if c.want == nil {
			assert.Error(t, err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got, c.in)
	}
}

func TestDecodeAnswerRules(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 89e6, time.UTC)
	const dt = `"datetime":"2026-03-04T05:06:07.089Z"`
	for _, c := range []struct {
		in   string
		want []Item
		err  string // expected error text, if any
	}{
		{in: `[]`, want: []Item{}},
		{in: `[{` + dt + `}]`, want: []Item{{Key: "temp", Time: at}}},
		{in: `[{"key":"temp","value":21.5,` + dt + `,"geo":{"lat":1,"long":2}}]`,
			want: []Item{{Key: "temp", Value: json.Number("21.5"), Time: at, Geo: &Geo{1, 2}}}},
		// Unknown members are skipped, the last of a repeated member wins,
		// escaped names are decoded, a null geo leaves an earlier one.
		{in: `[{"extra":{"x":[1,"]"]},"ke\u0079":"other","value":1,"value":"two",` + dt + `,"geo":{"long":2,"lat":1,"alt":9},"geo":null}]`,
			want: []Item{{Key: "other", Value: "two", Time: at, Geo: &Geo{1, 2}}}},
		{in: `[{"datetime":"20260304050607"}]`, want: []Item{{Key: "temp", Time: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}}},
		{in: `[{"value":1}]`, err: "thethings: read answer item without datetime: malformed read answer"},
		{in: `[{}]`, err: "thethings: read answer item without datetime: malformed read answer"},
		{in: `[{"datetime":null}]`, err: "thethings: malformed read answer at offset 13 of 19"},
		{in: `[{"datetime":"yesterday"}]`, err: "bad time"},
		{in: `[{"key":5,` + dt + `}]`, err: "thethings: malformed read answer at offset 8 of"},
		{in: `[{"geo":{"lat":1},` + dt + `}]`, err: "thethings: read answer geo without lat and long: malformed read answer"},
		{in: `[{"geo":{"lat":"1","long":2},` + dt + `}]`, err: "thethings: read answer geo lat: malformed read answer"},
		{in: `[{"value":{"a":},` + dt + `}]`, err: "thethings: read answer value: invalid character '}'"},
		{in: `[{` + dt + `},]`, err: "thethings: malformed read answer at offset 41 of 42"},
		{in: `[{"extra":"` + "\x01" + `"}]`, err: "thethings: malformed read answer at offset 11 of 15"},
	} {
		d := Decoder{Key: "temp", ParseTime: func(s string) (time.Time, error) {
			if s == "20260304050607" {
				return time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), nil
			}
			return time.Time{}, errors.New("bad time")
		}}
		got, err := d.Decode([]byte(c.in), 0)
		if c.err != "" {
			assert.ErrorContains(t, err, c.err, c.in)
			if !strings.Contains(c.err, "bad time") {
				assert.ErrorIs(t, err, ErrSyntax, c.in)
			}
			continue
		}
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got, c.in)
	}
}

// TestReuse: with Reuse, the next call overwrites the items and geos, and
// literals of one call share one string; without, every call is fresh.
func TestReuse(t *testing.T) {
	page := func(n int) []byte {
		return fmt.Appendf(nil, `[{"key":"k","value":%d,"datetime":"2026-01-02T03:04:05.000Z","geo":{"lat":%d,"long":0}},{"key":"other","value":"s%d","datetime":"2026-01-02T03:04:05.000Z"}]`, n, n, n)
	}
	d := Decoder{Key: "k", Reuse: true}
	first, err := d.Decode(page(1), 2)
	require.NoError(t, err)
	kept := first[0]
	assert.Equal(t, Item{Key: "k", Value: json.Number("1"), Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Geo: &Geo{1, 0}}, kept)
	assert.Equal(t, "other", first[1].Key)
	assert.Equal(t, "s1", first[1].Value)
	second, err := d.Decode(page(2), 2)
	require.NoError(t, err)
	assert.Same(t, &first[0], &second[0])
	assert.Equal(t, &Geo{2, 0}, kept.Geo, "the geo slice is reused")
	assert.Equal(t, json.Number("1"), kept.Value, "a literal outlives its call")

	var fresh Decoder
	a, err := fresh.Decode(page(1), 0)
	require.NoError(t, err)
	b, err := fresh.Decode(page(2), 0)
	require.NoError(t, err)
	assert.Equal(t, &Geo{1, 0}, a[0].Geo)
	assert.Equal(t, "s2", b[1].Value)
	assert.NotSame(t, &a[0], &b[0])
}

// TestFingerprint pins the fingerprint, which cursors store: FNV-64a over
// the value's compact JSON, then a 1 and the geo's float bits, big-endian.
func TestFingerprint(t *testing.T) {
	want := func(value string, geo *Geo) uint64 {
		h := fnv.New64a()
		var buf bytes.Buffer
		require.NoError(t, json.Compact(&buf, []byte(value)))
		h.Write(buf.Bytes())
		if geo != nil {
			b := []byte{1}
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(geo.Lat))
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(geo.Long))
			h.Write(b)
		}
		return h.Sum64()
	}
	in := `[{"value":21.50,"datetime":"2026-01-02T03:04:05.000Z"},` +
		`{"value":{ "a" : [1, 2] },"datetime":"2026-01-02T03:04:05.000Z","geo":{"lat":41.5,"long":-2}},` +
		`{"value":"x","datetime":"2026-01-02T03:04:05.000Z","geo":null},{"datetime":"2026-01-02T03:04:05.000Z"}]`
	for _, reuse := range []bool{false, true} {
		d := Decoder{Fingerprint: true, Reuse: reuse}
		_, err := d.Decode([]byte(in), 0)
		require.NoError(t, err)
		fnvEmpty := fnv.New64a().Sum64()
		assert.Equal(t, []uint64{want(`21.50`, nil), want(`{"a":[1,2]}`, &Geo{41.5, -2}), want(`"x"`, nil), fnvEmpty}, d.Fingerprints())
	}
}

// TestAllocs: a reused decoder allocates one string for a page's literals
// and one interface per number, nothing else.
func TestAllocs(t *testing.T) {
	var b strings.Builder
	b.WriteByte('[')
	for i := range 100 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"key":"temperature","value":%d.5,"datetime":"2026-01-02T03:04:05.%03dZ"}`, i, i)
	}
	b.WriteByte(']')
	page := []byte(b.String())
	d := Decoder{Key: "temperature", Reuse: true, Fingerprint: true}
	allocs := testing.AllocsPerRun(20, func() {
		if items, err := d.Decode(page, 100); err != nil || len(items) != 100 {
			t.Fatal(err, len(items))
		}
	})
	assert.LessOrEqual(t, allocs, 101.0)
}

// FuzzItems: the decoder never panics, whatever it is fed, and gives one
// fingerprint per item it returns.
func FuzzItems(f *testing.F) {
	for _, s := range []string{
		`[{"key":"temperature","value":21.5,"datetime":"2026-01-02T03:04:05.123Z","geo":{"lat":41.4,"long":2.2}}]`,
		`[{"key":"a","value":{"x":[1,"}"]},"datetime":null,"geo":null},{"value":"é\n","key":"b"}]`,
		`[{"key":"a","value":-0.5e+3,"datetime":"2026-01-02T03:04:05Z"}]`, `[]`, `[{}]`, `[null]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, optional := range []bool{false, true} {
			d := Decoder{OptionalTime: optional, Reuse: true, Fingerprint: true}
			got, err := d.Decode(frame, 1)
			if err == nil {
				assert.Len(t, d.Fingerprints(), len(got))
			}
		}
	})
}
