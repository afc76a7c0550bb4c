package thethings

// Benchmarks of the write path. They live in package thethings to reach the
// encoder; run them with
//
//	go test -run '^$' -bench 'EncodeBatch|WriteRoundTrip|WriterThroughput' -benchmem

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thethings-go/thethings/internal/wire"
	"github.com/thethings-go/thethings/thethingstest"
)

const benchToken = "bench-thing-token-0123456789abcdefghijklmnopq"

// benchValues returns n float64 readings of key with datetimes from start,
// one millisecond apart, so that they are stored in order.
func benchValues(key string, n int, start time.Time) []Value {
	vals := make([]Value, n)
	for i := range vals {
		vals[i] = Value{Key: key, Value: 20 + float64(i)*0.37, Datetime: start.Add(time.Duration(i) * time.Millisecond)}
	}
	return vals
}

// wireBatch is what a hand-written client would marshal.
type wireBatch struct {
	Values []wireItem `json:"values"`
}

type wireItem struct {
	Key      string  `json:"key"`
	Value    float64 `json:"value"`
	Datetime string  `json:"datetime"`
}

// BenchmarkEncodeBatch: a 100-value batch of float64 readings with
// datetimes, by the SDK's encoder (with a fresh buffer, as Write does) and
// by encoding/json on the equivalent structs (datetimes already formatted).
func BenchmarkEncodeBatch(b *testing.B) {
	vals := benchValues("temperature", 100, time.Date(2024, 3, 1, 12, 0, 0, 500_000_000, time.UTC))
	b.Run("sdk", func(b *testing.B) {
		// The encoder appends to a caller's buffer, reused here.
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = appendBatch(buf[:0], vals, 0, false); err != nil || len(buf) == 0 {
				b.Fatal(err)
			}
		}
	})
	b.Run("sdk_fresh_buffer", func(b *testing.B) {
		// As Write does: one buffer per request, sized by the encoder.
		b.ReportAllocs()
		for b.Loop() {
			body, err := appendBatch(nil, vals, 0, false)
			if err != nil || len(body) == 0 {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		wb := wireBatch{Values: make([]wireItem, len(vals))}
		for i, v := range vals {
			wb.Values[i] = wireItem{Key: v.Key, Value: v.Value.(float64), Datetime: string(wire.AppendDatetime(nil, v.Datetime))}
		}
		b.ReportAllocs()
		for b.Loop() {
			body, err := json.Marshal(&wb)
			if err != nil || len(body) == 0 {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWriteRoundTrip: one 100-value write to the emulator over
// loopback, by the SDK and by a minimal net/http + encoding/json client.
// Each has its own emulator and reuses its keep-alive connection.
func BenchmarkWriteRoundTrip(b *testing.B) {
	start := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	b.Run("sdk", func(b *testing.B) {
		srv := thethingstest.NewServer(b, thethingstest.WithThingTokens(benchToken))
		c, err := NewClient(benchToken, WithBaseURL(srv.URL()))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			vals := benchValues("t", 100, start.Add(time.Duration(i)*100*time.Millisecond))
			if err := c.Write(ctx, vals); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.StopTimer()
		if got := srv.StoredCount(benchToken, "t"); got != 100*i {
			b.Fatalf("stored %d, want %d", got, 100*i)
		}
	})
	b.Run("baseline_nethttp", func(b *testing.B) {
		srv := thethingstest.NewServer(b, thethingstest.WithThingTokens(benchToken))
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 30 * time.Second}
		defer hc.CloseIdleConnections()
		url := srv.URL() + "things/" + benchToken
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			vals := benchValues("t", 100, start.Add(time.Duration(i)*100*time.Millisecond))
			wb := wireBatch{Values: make([]wireItem, len(vals))}
			for j, v := range vals {
				wb.Values[j] = wireItem{Key: v.Key, Value: v.Value.(float64), Datetime: v.Datetime.UTC().Format("2006-01-02T15:04:05.000Z")}
			}
			body, err := json.Marshal(&wb)
			if err != nil {
				b.Fatal(err)
			}
			req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				b.Fatalf("status %d", resp.StatusCode)
			}
			i++
		}
		b.StopTimer()
		if got := srv.StoredCount(benchToken, "t"); got != 100*i {
			b.Fatalf("stored %d, want %d", got, 100*i)
		}
	})
}

// BenchmarkWriterThroughput: values per second through a Writer with the
// default batch size, against a loop of single-value Writes (one op is one
// value). Against the emulator, whose per-value work (decoding, storing,
// broadcasting) bounds the ratio; and against a sink server that reads the
// body and answers 201, which shows the SDK's own cost.
func BenchmarkWriterThroughput(b *testing.B) {
	servers := []struct {
		name  string
		start func(b *testing.B) (baseURL string, stored func() int)
	}{
		{"emulator", func(b *testing.B) (string, func() int) {
			srv := thethingstest.NewServer(b, thethingstest.WithThingTokens(benchToken))
			return srv.URL(), func() int { return srv.StoredCount(benchToken, "t") }
		}},
		{"sink", func(b *testing.B) (string, func() int) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				data, _ := io.ReadAll(r.Body)
				// Count the values without decoding them.
				n.Add(int64(bytes.Count(data, []byte(`{"key":`))))
				w.WriteHeader(http.StatusCreated)
				_, _ = w.Write([]byte(`{"status":"created"}`))
			}))
			b.Cleanup(srv.Close)
			return srv.URL + "/v2/", func() int { return int(n.Load()) }
		}},
	}
	start := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, s := range servers {
		b.Run(s.name+"/writer", func(b *testing.B) {
			base, stored := s.start(b)
			c, err := NewClient(benchToken, WithBaseURL(base))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			w, err := c.NewWriter()
			if err != nil {
				b.Fatal(err)
			}
			for n := range b.N {
				v := Value{Key: "t", Value: float64(n), Datetime: start.Add(time.Duration(n) * time.Millisecond)}
				if err := w.Add(ctx, v); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(ctx); err != nil { // every value sent: part of the time
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "values/s")
			if got := stored(); got != b.N {
				b.Fatalf("stored %d, want %d", got, b.N)
			}
		})
		b.Run(s.name+"/single_write", func(b *testing.B) {
			base, stored := s.start(b)
			c, err := NewClient(benchToken, WithBaseURL(base))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			vals := make([]Value, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for n := range b.N {
				vals[0] = Value{Key: "t", Value: float64(n), Datetime: start.Add(time.Duration(n) * time.Millisecond)}
				if err := c.Write(ctx, vals); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "values/s")
			if got := stored(); got != b.N {
				b.Fatalf("stored %d, want %d", got, b.N)
			}
		})
	}
}
