package stream

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/thethings-go/thethings/internal/wire"
)

func TestDecodeItems(t *testing.T) {
	frame := `[{"key":"big","value":12345678901234567890.000000001,"datetime":"2026-03-04T05:06:07.089Z","geo":{"lat":41.39,"long":2.15}},` +
		`{"key":"s","value":"plain"},{"key":"esc","value":"a\"b\\c\u00e9 ✓"},` +
		`{"key":"t","value":true},{"key":"f","value":false},{"key":"n","value":null},` +
		`{"key":"obj","value":{"a":[1,2.50,{"b":"x"}]},"datetime":"20260304050607"},` +
		`{"key":"neg","value":-0.5e3,"datetime":"2026-03-04T05:06:07Z","extra":1}]`
	items, err := DecodeItems([]byte(frame))
	require.NoError(t, err)
	require.Len(t, items, 8)

	assert.Equal(t, "big", items[0].Key)
	assert.Equal(t, json.Number("12345678901234567890.000000001"), items[0].Value)
	assert.Equal(t, time.Date(2026, 3, 4, 5, 6, 7, 89e6, time.UTC), items[0].Time)
	assert.Equal(t, &wire.Geo{Lat: 41.39, Long: 2.15}, items[0].Geo)

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
		_, err := DecodeItems([]byte(bad))
		assert.Error(t, err, bad)
	}
}

// FuzzDecodeItems checks that the hand-written item path gives exactly what
// encoding/json gives, and that DecodeItems never panics.
func FuzzDecodeItems(f *testing.F) {
	for _, fr := range benchFrames()[:4] {
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
		fast, ok := fastItems(frame)
		slow, err := slowItems(frame)
		if ok {
			if err != nil {
				t.Fatalf("fast path accepted what encoding/json refuses (%v): %q", err, frame)
			}
			assert.Equal(t, slow, fast, "%q", frame)
		}
		_, _ = DecodeItems(frame)
	})
}
