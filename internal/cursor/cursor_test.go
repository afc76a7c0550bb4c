package cursor

import (
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, s := range []State{
		{Key: "k"},
		{Key: "temperature.room-1_a", HasT: true, T: 1704067200123, Inclusive: true, HasStart: true, Start: MinMillis, HasEnd: true, End: MaxMillis,
			Seen: []uint64{3, 1, 1, 1<<64 - 1}},
	} {
		got, err := Decode(Encode(s))
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", s, err)
		}
		if got.Key != s.Key || got.HasT != s.HasT || got.T != s.T || got.Inclusive != s.Inclusive ||
			got.HasStart != s.HasStart || got.Start != s.Start || got.HasEnd != s.HasEnd || got.End != s.End || len(got.Seen) != len(s.Seen) {
			t.Fatalf("round trip: got %+v, want %+v", got, s)
		}
		count := map[uint64]int{}
		for _, fp := range s.Seen {
			count[fp]++
		}
		for _, fp := range got.Seen {
			count[fp]--
		}
		for fp, n := range count {
			if n != 0 {
				t.Fatalf("fingerprint %x: multiset differs by %d", fp, n)
			}
		}
	}
}

func TestDecodeRefusesAlteredCursors(t *testing.T) {
	good := Encode(State{Key: "k", HasT: true, T: 42, Seen: []uint64{7}})
	for _, bad := range []string{"", "AQ", "!!!!", good + "=", good[:len(good)-2], "x" + good} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%q) accepted", bad)
		}
	}
	// Every single-bit change is caught.
	b := []byte(good)
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range b {
		for j := range alphabet {
			if alphabet[j] == good[i] {
				continue
			}
			c := append([]byte(nil), b...)
			c[i] = alphabet[j]
			if _, err := Decode(string(c)); err == nil {
				t.Fatalf("Decode accepted %q (changed position %d)", c, i)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(State{Key: "k"}))
	f.Add(Encode(State{Key: "temp", HasT: true, T: 1, Seen: []uint64{1, 2}}))
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := Decode(s)
		if err != nil {
			return
		}
		if Encode(st) != s {
			t.Fatalf("Decode accepted %q, which Encode would write as %q", s, Encode(st))
		}
	})
}

// A value stamped at the last millisecond of the year 9999 is a value like
// any other: the cursor after it must be accepted.
func TestDecodeAcceptsTheLastInstant(t *testing.T) {
	s := State{Key: "k", HasT: true, T: MaxMillis, Seen: []uint64{7}}
	got, err := Decode(Encode(s))
	if err != nil || got.T != MaxMillis {
		t.Fatalf("Decode(Encode(%+v)) = %+v, %v", s, got, err)
	}
}

func TestDecodeRefusesInstantsOutOfRange(t *testing.T) {
	for _, s := range []State{
		{Key: "k", HasT: true, T: MaxMillis + 1},
		{Key: "k", HasT: true, T: MinMillis - 1},
		{Key: "k", HasT: true, T: 1<<63 - 1},
		{Key: "k", HasStart: true, Start: MinMillis - 1},
		{Key: "k", HasEnd: true, End: MaxMillis + 1},
	} {
		if _, err := Decode(Encode(s)); err != ErrInvalid {
			t.Errorf("Decode(Encode(%+v)) = %v, want ErrInvalid", s, err)
		}
	}
}
