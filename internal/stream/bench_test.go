package stream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"
)

// benchFrames are data frames as the emulator sends them: one array per
// write, items with key, value, datetime and sometimes geo.
func benchFrames() [][]byte {
	var frames [][]byte
	for i := range 64 {
		var f string
		switch i % 4 {
		case 0:
			f = fmt.Sprintf(`[{"key":"temperature","value":%d.%02d,"datetime":"2026-01-02T03:04:%02d.%03dZ"}]`, 20+i%10, i, i%60, i)
		case 1:
			f = fmt.Sprintf(`[{"key":"temperature","value":%d.5,"datetime":"2026-01-02T03:04:05.%03dZ","geo":{"lat":41.4121132,"long":2.2199454}},`+
				`{"key":"humidity","value":%d,"datetime":"2026-01-02T03:04:05.%03dZ"}]`, i, i, 40+i, i)
		case 2:
			f = fmt.Sprintf(`[{"key":"door","value":"open %d","datetime":"2026-01-02T03:04:05.%03dZ"}]`, i, i)
		default:
			f = fmt.Sprintf(`[{"key":"a","value":%d,"datetime":"2026-01-02T03:04:05.%03dZ"},{"key":"b","value":true,"datetime":"2026-01-02T03:04:05.%03dZ"},`+
				`{"key":"c","value":"x","datetime":"2026-01-02T03:04:05.%03dZ"},{"key":"d","value":%d.25,"datetime":"2026-01-02T03:04:05.%03dZ"}]`, i, i, i, i, i, i)
		}
		frames = append(frames, []byte(f))
	}
	return frames
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
