package thethings

import "time"

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
	for i := 0; i < k; i++ {
		r.buf[(r.head+i)%len(r.buf)] = Value{}
	}
	if r.n -= k; r.n == 0 {
		r.head = 0
	} else {
		r.head = (r.head + k) % len(r.buf)
	}
}
