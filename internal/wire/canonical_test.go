package wire

import (
	"encoding/json"
	"math"
	"testing"
)

// One value, however it is spelled or typed, has one canonical form and
// one fingerprint; different values do not share them.
func TestCanonical(t *testing.T) {
	same := [][]any{
		{float64(21.5), json.Number("21.50"), json.Number("2.15e1"), float32(21.5)},
		{0, math.Copysign(0, -1), json.Number("-0"), json.Number("0.0")},
		{map[string]any{"b": 1, "a": []any{1.5, "x"}}, json.RawMessage(`{"a":[1.50,"x"],"b":1e0}`)},
		{"21.5", json.RawMessage(`"21.5"`)},
		{true, json.RawMessage(`true`)},
		{nil, json.RawMessage(`null`)},
	}
	seen := map[string]int{}
	for g, group := range same {
		want, err := AppendCanonical(nil, group[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range group[1:] {
			got, err := AppendCanonical(nil, v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("%#v: %s, want %s", v, got, want)
			}
			if Fingerprint("k", v) != Fingerprint("k", group[0]) {
				t.Errorf("%#v: fingerprint differs from %#v's", v, group[0])
			}
		}
		if other, ok := seen[string(want)]; ok {
			t.Errorf("groups %d and %d share %s", other, g, want)
		}
		seen[string(want)] = g
	}
	if Fingerprint("a", 1) == Fingerprint("b", 1) {
		t.Error("the key is part of the fingerprint")
	}
}
