package stream

import (
	"testing"
)

// BenchmarkKeepAlives: a stream of nothing but keep-alives costs no
// allocation. One op is one keep-alive frame.
func BenchmarkKeepAlives(b *testing.B) {
	d := NewDecoder(&repeatReader{data: []byte("{}")}, 0)
	b.ReportAllocs()
	for b.Loop() {
		f, err := d.Next()
		if err != nil || !IsKeepAlive(f) {
			b.Fatal(f, err)
		}
	}
}
