package thethings

import (
	"context"
	"sync"
	"time"
)

// ring is a FIFO of values in a circular buffer that grows as needed.
type ring struct {
	buf  []Value
	head int // index of the oldest value
	n    int // number of values
}

// push appends values, pointing their Geo at the copies in geos (one per
// non-nil Geo, in order) and giving those without a Datetime theirs from
// stamps, if not nil.
func (r *ring) push(values []Value, geos []Geo, stamps []time.Time) {
	if r.n+len(values) > len(r.buf) {
		grown := make([]Value, max(2*len(r.buf), r.n+len(values), 64))
		r.copyTo(grown, r.n)
		r.buf, r.head = grown, 0
	}
	for i := range values {
		v := values[i]
		if v.Geo != nil {
			v.Geo = &geos[0]
			geos = geos[1:]
		}
		if v.Datetime.IsZero() && stamps != nil {
			v.Datetime = stamps[i]
		}
		r.buf[(r.head+r.n)%len(r.buf)] = v
		r.n++
	}
}

// copyTo copies the k oldest values to dst.
func (r *ring) copyTo(dst []Value, k int) {
	if k == 0 {
		return
	}
	end := min(r.head+k, len(r.buf))
	c := copy(dst, r.buf[r.head:end])
	copy(dst[c:k], r.buf)
}

// first returns a copy of the k oldest values.
func (r *ring) first(k int) []Value {
	out := make([]Value, k)
	r.copyTo(out, k)
	return out
}

// drop removes the k oldest values.
func (r *ring) drop(k int) {
	end := min(r.head+k, len(r.buf))
	clear(r.buf[r.head:end])
	clear(r.buf[:k-(end-r.head)])
	if r.n -= k; r.n == 0 {
		r.head = 0
	} else {
		r.head = (r.head + k) % len(r.buf)
	}
}

// memBuffer is the Writer's buffer in memory: a ring of at most max values.
type memBuffer struct {
	max  int
	mu   sync.Mutex
	ring ring
	room chan struct{} // closed and replaced when values leave

	// out holds the batch next returned. One batch is out at a time, and
	// whatever keeps its values copies them: the slice is reused (it keeps
	// one batch's values until then).
	out []Value
}

func newMemBuffer(max int) *memBuffer { return &memBuffer{max: max, room: make(chan struct{})} }

func (b *memBuffer) prepare(values []Value, geos []Geo, stamps []time.Time) (taking, error) {
	if len(values) > b.max {
		return taking{}, errorf("thethings: %d values cannot fit in a writer buffer of %d: %w", len(values), b.max, ErrInvalidValue)
	}
	return taking{n: len(values), values: values, geos: geos, stamps: stamps}, nil
}

func (b *memBuffer) put(t taking) (int64, <-chan struct{}, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ring.n+t.n > b.max {
		return 0, b.room, nil
	}
	b.ring.push(t.values, t.geos, t.stamps)
	return 0, nil, nil
}

func (b *memBuffer) commit(int64) error                    { return nil }
func (b *memBuffer) held() int                             { return 0 }
func (b *memBuffer) inFlight(context.Context) (int, error) { return 0, nil }
func (b *memBuffer) sending() (time.Time, error)           { return time.Time{}, nil }

func (b *memBuffer) next(k int) ([]Value, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k = min(k, b.ring.n)
	if cap(b.out) < k {
		b.out = make([]Value, k)
	}
	b.out = b.out[:k]
	b.ring.copyTo(b.out, k)
	return b.out, nil
}

func (b *memBuffer) done(n int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ring.drop(n)
	close(b.room)
	b.room = make(chan struct{})
	return nil
}

// close reports every value still held: those of cur, a request cut while
// it may have stored them, as Unknown; the others as not written.
func (b *memBuffer) close(cause error, cur *delivery) (errs []error, reported int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	reported = b.ring.n
	if cur != nil && cur.maybe {
		if vals := cur.unresolved(); len(vals) > 0 {
			errs = append(errs, &WriteError{Values: vals, Unknown: true, Err: errorf("thethings: writer closed while a request was in flight: %w", cause)})
		}
		b.ring.drop(len(cur.orig))
	}
	if b.ring.n > 0 {
		errs = append(errs, &WriteError{
			Values: b.ring.first(b.ring.n),
			Err:    errorf("thethings: writer closed before sending: %w", cause),
		})
		b.ring = ring{}
	}
	return errs, reported
}
