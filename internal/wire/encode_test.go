package wire

import (
	"errors"
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
