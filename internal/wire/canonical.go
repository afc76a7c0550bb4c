package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
)

// AppendCanonical appends v's JSON in canonical form, the one value
// identity of the SDK: numbers as the float64 they denote (shortest form,
// -0 as 0, as the platform's JavaScript answers them), object members
// sorted by name, no spaces. A value as sent and the same value as the
// platform answers it compare equal however either spells it. v is what a
// Value holds; an error is what AppendValue refuses.
func AppendCanonical(b []byte, v any) ([]byte, error) {
	raw, err := AppendValue(nil, v)
	if err != nil {
		return b, err
	}
	if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
		return appendCanonicalFloat(b, f), nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return b, err
	}
	return appendCanonical(b, x), nil
}

// Fingerprint is a 64-bit FNV-1a hash of key and v's canonical JSON, for
// bookkeeping that keeps no value's JSON. A value AppendValue refuses is
// hashed by its Go syntax instead.
func Fingerprint(key string, v any) uint64 {
	h := fnv.New64a()
	b := append([]byte(key), 0)
	canon, err := AppendCanonical(b, v)
	if err != nil {
		canon = fmt.Append(b, v)
	}
	_, _ = h.Write(canon)
	return h.Sum64()
}

// appendCanonical appends x, as decoded with UseNumber, in canonical JSON.
func appendCanonical(b []byte, x any) []byte {
	switch x := x.(type) {
	case json.Number:
		if f, err := strconv.ParseFloat(string(x), 64); err == nil {
			return appendCanonicalFloat(b, f)
		}
		return append(b, x...)
	case string:
		return strconv.AppendQuote(b, x)
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanonical(b, e)
		}
		return append(b, ']')
	case map[string]any:
		b = append(b, '{')
		for i, k := range slices.Sorted(maps.Keys(x)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, k)
			b = append(b, ':')
			b = appendCanonical(b, x[k])
		}
		return append(b, '}')
	case bool:
		return strconv.AppendBool(b, x)
	default:
		return append(b, "null"...)
	}
}

// appendCanonicalFloat appends f in canonical form: -0 as 0.
func appendCanonicalFloat(b []byte, f float64) []byte {
	if f == 0 {
		f = 0 // -0 too
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
