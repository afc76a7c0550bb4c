package thethings

import (
	"fmt"
	"testing"
	"time"
)

// The memory buffer hands out its values in order, each once, while the
// ring wraps around and grows and the batch's slice is reused, whatever
// the batch size and however many values of a batch are done.
func TestMemBufferBatchesInOrderAcrossTheWrap(t *testing.T) {
	b := newMemBuffer(1000)
	at := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	added, taken := 0, 0
	add := func(n int) {
		vals := make([]Value, n)
		for i := range vals {
			vals[i] = Value{Key: "t", Value: added, Datetime: at.Add(time.Duration(added) * time.Millisecond)}
			added++
		}
		tk, err := b.prepare(vals, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, room, err := b.put(tk); err != nil || room != nil {
			t.Fatalf("put: %v, room %v", err, room != nil)
		}
	}
	// Sizes chosen so that the ring (64 slots at first) wraps, grows, and
	// the sender's batch size changes between batches; in round 7 only 20
	// of the 30 values are done.
	add(50)
	for round, k := range []int{10, 10, 10, 7, 30, 30, 30, 30, 30, 5, 64, 64, 64} {
		if b.ring.n < 2*k {
			add(70)
		}
		batch, err := b.next(k)
		if err != nil || len(batch) != k {
			t.Fatalf("round %d: %d values, %v", round, len(batch), err)
		}
		for i, v := range batch {
			if v.Value != taken+i {
				t.Fatalf("round %d: value %d is %v, want %d", round, i, v.Value, taken+i)
			}
		}
		if round == 7 {
			k = 20
		}
		taken += k
		if err := b.done(k); err != nil {
			t.Fatal(err)
		}
	}
	errs, reported := b.close(fmt.Errorf("end"), nil)
	if reported != added-taken || len(errs) != 1 {
		t.Fatalf("close reported %d values in %v, want %d", reported, errs, added-taken)
	}
}
