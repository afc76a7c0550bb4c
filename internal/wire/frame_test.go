package wire

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeFrame(t *testing.T) {
	frame := `[{"key":"big","value":12345678901234567890.000000001,"datetime":"2026-03-04T05:06:07.089Z","geo":{"lat":41.39,"long":2.15}},` +
		`{"key":"s","value":"plain"},{"key":"esc","value":"a\"b\\c\u00e9 ✓"},` +
		`{"key":"t","value":true},{"key":"f","value":false},{"key":"n","value":null},` +
		`{"key":"obj","value":{"a":[1,2.50,{"b":"x"}]},"datetime":"20260304050607"},` +
		`{"key":"neg","value":-0.5e3,"datetime":"2026-03-04T05:06:07Z","extra":1}]`
	items, err := DecodeFrame([]byte(frame))
	require.NoError(t, err)
	require.Len(t, items, 8)

	assert.Equal(t, "big", items[0].Key)
	assert.Equal(t, json.Number("12345678901234567890.000000001"), items[0].Value)
	assert.Equal(t, time.Date(2026, 3, 4, 5, 6, 7, 89e6, time.UTC), items[0].Time)
	assert.Equal(t, &Geo{Lat: 41.39, Long: 2.15}, items[0].Geo)

	assert.Equal(t, "plain", items[1].Value)
	assert.Equal(t, "a\"b\\cé ✓", items[2].Value)
	assert.Equal(t, true, items[3].Value)
	assert.Equal(t, false, items[4].Value)
	assert.Nil(t, items[5].Value)
	assert.Equal(t, map[string]any{"a": []any{json.Number("1"), json.Number("2.50"), map[string]any{"b": "x"}}}, items[6].Value)
	assert.True(t, items[6].Time.IsZero())
	assert.Equal(t, "20260304050607", items[6].RawTime)
	assert.Equal(t, json.Number("-0.5e3"), items[7].Value)
	assert.Equal(t, time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), items[7].Time)
	assert.Nil(t, items[7].Geo)

	for _, bad := range []string{`[1]`, `[{"key":"a","value":}]`, `{"key":"a"}`, `[{"key":3}]`, `[{"key":"a","value":"\x01"}]`} {
		_, err := DecodeFrame([]byte(bad))
		assert.Error(t, err, bad)
	}
}

// FuzzDecodeItems checks that DecodeFrame never panics, and that a frame it
// accepts and encoding/json accepts too, with every member name given once
// and spelled in lower case (the platform's shape), decodes the same.
func FuzzDecodeItems(f *testing.F) {
	data, err := os.ReadFile("testdata/frames.txt")
	if err != nil {
		f.Fatal(err)
	}
	for _, fr := range bytes.Split(data, []byte("\n"))[:4] {
		f.Add(fr)
	}
	for _, s := range []string{
		`[]`, ` [ ] `, `[{}]`, `[{"key":"a","value":-0.5e+3},{"value":{"x":[1,"}"]},"key":"b"}]`,
		`[{"key":"a","value":01}]`, `[{"key":"a","value":1.}]`, `[{"key":"a","value":"é"}]`,
		`[{"key":"a","key":"b"}]`, `[{"KEY":"a"}]`, `[{"key":"a","datetime":null,"geo":null}]`,
		`[{"key":"a","geo":{"long":2,"lat":1}}]`, `[{"key":"a","datetime":"2026-01-02T03:04:05Z"}]`,
		`[{"key":"a","value":tru}]`, `[{"key":"a","value":[1,2]]`, `[null]`, `[{"key":"a"},]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		got, err := DecodeFrame(frame)
		if err != nil {
			return
		}
		if want, ok := reference(frame); ok {
			assert.Equal(t, want, got, "%q", frame)
		}
	})
}

// reference decodes frame with encoding/json, and reports false unless it
// can and frame has the platform's usual shape, where encoding/json's rules
// (case-insensitive names, the first of a repeated null) and the
// platform's agree: an array of objects whose member names are among the
// four, in lower case, each at most once, and whose geos hold lat and
// long once each.
func reference(frame []byte) ([]Item, bool) {
	var shapes []map[string]json.RawMessage
	if json.Unmarshal(frame, &shapes) != nil {
		return nil, false
	}
	for _, it := range shapes {
		if it == nil {
			return nil, false
		}
		for name := range it {
			switch name {
			case "key", "value", "datetime", "geo":
			default:
				return nil, false
			}
		}
		if g, ok := it["geo"]; ok && string(g) != "null" {
			var geo map[string]json.RawMessage
			if json.Unmarshal(g, &geo) != nil || len(geo) != 2 || geo["lat"] == nil || geo["long"] == nil {
				return nil, false
			}
		}
	}
	// Repeated names collapse in the map: count them in the text.
	for _, name := range []string{`"key"`, `"datetime"`, `"geo"`, `"value"`} {
		if bytes.Count(frame, []byte(name)) > len(shapes) {
			return nil, false
		}
	}

	var decoded []struct {
		Key      string    `json:"key"`
		Value    itemValue `json:"value"`
		Datetime itemTime  `json:"datetime"`
		Geo      *Geo      `json:"geo"`
	}
	if json.Unmarshal(frame, &decoded) != nil {
		return nil, false
	}
	items := make([]Item, len(decoded))
	for i, w := range decoded {
		items[i] = Item{Key: w.Key, Value: w.Value.v, Time: w.Datetime.t, RawTime: w.Datetime.raw, Geo: w.Geo}
	}
	return items, true
}

// itemValue decodes a value as encoding/json with UseNumber would, without
// a Decoder for the scalar cases.
type itemValue struct{ v any }

func (iv *itemValue) UnmarshalJSON(b []byte) error {
	switch c := b[0]; {
	case c == '-' || c >= '0' && c <= '9':
		iv.v = json.Number(b)
		return nil
	case c == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		iv.v = s
		return nil
	case c == 't':
		iv.v = true
		return nil
	case c == 'f':
		iv.v = false
		return nil
	case c == 'n':
		iv.v = nil
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(&iv.v)
}

// itemTime decodes "datetime".
type itemTime struct {
	t   time.Time
	raw string
}

func (it *itemTime) UnmarshalJSON(b []byte) error {
	if b[0] == 'n' {
		return nil
	}
	if b[0] != '"' {
		it.raw = string(b)
		return nil
	}
	if t, ok := ParseISOMillis(b[1 : len(b)-1]); ok {
		it.t = t
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	it.raw = s
	return nil
}
