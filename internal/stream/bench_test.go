package stream

import (
	"bytes"
	"os"
	"testing"
)

// benchFrames are data frames as the emulator sends them, one per line of
// testdata/frames.txt: one array per write, items with key, value, datetime
// and sometimes geo. The SDK's own subscribe benchmark reads them too.
func benchFrames() [][]byte {
	data, err := os.ReadFile("testdata/frames.txt")
	if err != nil {
		panic(err)
	}
	return bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
}

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
