package stream

import (
	"bytes"
	"encoding/json"
	"io"
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

// BenchmarkFrameDecode compares the subscription's frame path (framing a
// byte stream, then decoding each data frame's items with exact numbers and
// parsed datetimes) with the baseline of encoding/json unmarshalling each
// frame, already cut, into []struct{Key string; Value any}. One op is the
// whole set of 64 frames.
func BenchmarkFrameDecode(b *testing.B) {
	frames := benchFrames()
	stream := bytes.Join(frames, nil)
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(stream)))
		for b.Loop() {
			for _, f := range frames {
				var items []struct {
					Key   string
					Value any
				}
				if err := json.Unmarshal(f, &items); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("stream", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(stream)))
		r := bytes.NewReader(stream)
		for b.Loop() {
			r.Reset(stream)
			d := NewDecoder(r, 0)
			for {
				f, err := d.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if _, err := DecodeItems(f); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
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
