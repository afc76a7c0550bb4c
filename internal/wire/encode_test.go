package wire

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestKeyErrorNamesTheCharacter: a key with a non-ASCII character is
// refused with the character itself, not its first byte.
func TestKeyErrorNamesTheCharacter(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]string{
		"temp°C":      `'°'`,
		"a b":         `' '`,
		"x\xc3":       "byte 0xc3",
		"$settings.é": `'é'`,
	} {
		err := ValidateKey(key, true)
		if !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("%q: %v", key, err)
		}
		if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "Â") {
			t.Errorf("%q: %v, want it to name %s", key, err, want)
		}
	}
}

// TestAppendBatchChecksOnce: AppendBatch refuses what CheckItem refuses,
// naming the item's index.
func TestAppendBatchChecksOnce(t *testing.T) {
	t.Parallel()
	bad := &Geo{Lat: 91}
	keys := []string{"a", "b"}
	geos := []*Geo{nil, bad}
	item := func(i int) (string, any, *Geo, time.Time) { return keys[i], 1, geos[i], time.Time{} }
	if err := CheckItem(item(1)); !errors.Is(err, ErrInvalidValue) {
		t.Fatal(err)
	}
	_, err := AppendBatch(nil, 2, 10, item, false)
	var ie *ItemError
	if !errors.As(err, &ie) || ie.Index != 11 || ie.Key != "b" || !errors.Is(err, ErrInvalidValue) {
		t.Fatalf("%v", err)
	}
	body, err := AppendBatch(nil, 1, 0, item, false)
	if err != nil || string(body) != `{"values":[{"key":"a","value":1}]}` {
		t.Fatalf("%s %v", body, err)
	}
}

// TestWholeNumbersEncodeAsEncodingJSON: the integer fast path of
// appendFloat writes what encoding/json writes, at the edges of exactness
// (2^24 for float32, 2^53 for float64), for -0, and for random values.
func TestWholeNumbersEncodeAsEncodingJSON(t *testing.T) {
	t.Parallel()
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 1e15, 1e20, 1e21, -1e21, 123456789}
	for _, edge := range []float64{1 << 24, 1 << 53} {
		for d := -3.0; d <= 3; d++ {
			vals = append(vals, edge+d, -(edge + d))
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		vals = append(vals, math.Trunc(r.NormFloat64()*math.Pow(10, float64(r.IntN(18)))))
	}
	for _, f := range vals {
		want, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendFloat(nil, f, 64); string(got) != string(want) {
			t.Fatalf("float64 %v: %s, encoding/json %s", f, got, want)
		}
		f32 := float32(f)
		if math.IsInf(float64(f32), 0) {
			continue
		}
		want, _ = json.Marshal(f32)
		if got := appendFloat(nil, float64(f32), 32); string(got) != string(want) {
			t.Fatalf("float32 %v: %s, encoding/json %s", f32, got, want)
		}
	}
}
