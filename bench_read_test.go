package thethings

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/thethings-go/thethings/thethingstest"
)

// pageBody is a read answer of n numbers, as the platform sends them.
func pageBody(n int) []byte {
	var b strings.Builder
	b.WriteByte('[')
	at := time.Date(2017, 1, 16, 10, 25, 10, 644e6, time.UTC)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"key":"temperature","value":%d.%03d,"datetime":"%s"}`, 20+i%30, i%1000, at.Add(-time.Duration(i)*time.Minute).Format(isoMillis))
	}
	b.WriteByte(']')
	return []byte(b.String())
}

// BenchmarkDecodePage compares decoding a 1000-value page with
// json.Unmarshal into a plain struct slice, the baseline.
func BenchmarkDecodePage(b *testing.B) {
	body := pageBody(1000)
	b.Run("baseline=json.Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var out []struct {
				Key      string
				Value    float64
				Datetime time.Time
			}
			if err := json.Unmarshal(body, &out); err != nil || len(out) != 1000 {
				b.Fatal(err, len(out))
			}
		}
	})
	b.Run("pageDecoder/reused", func(b *testing.B) { // as Values decodes
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		d := pageDecoder{key: "temperature", max: 1000} // bounded, as a read is
		for b.Loop() {
			if _, vals, err := d.decode(body, 1000); err != nil || len(vals) != 1000 {
				b.Fatal(err, len(vals))
			}
		}
	})
	b.Run("pageDecoder/fresh", func(b *testing.B) { // as one Read decodes
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			d := pageDecoder{key: "temperature", max: 1000}
			if _, vals, err := d.decode(body, 1000); err != nil || len(vals) != 1000 {
				b.Fatal(err, len(vals))
			}
		}
	})
}

// seededServer starts a test server holding n values of key "big" for the
// thing "tok". Not NewServer: its tb.Cleanup would keep every iteration's
// server, and its store, reachable until the benchmark ends, and the forced
// GCs of valuesHeap would scan them all. The caller closes it.
func seededServer(tb testing.TB, n int) *thethingstest.Server {
	tb.Helper()
	srv, err := thethingstest.New(thethingstest.WithThingTokens("tok"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	recs := make([]thethingstest.Record, n)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range recs {
		recs[i] = thethingstest.Record{Value: json.RawMessage(fmt.Sprintf("%d.5", i%100)), Datetime: base.Add(time.Duration(i) * time.Second)}
	}
	if err := srv.Seed("tok", "big", recs...); err != nil {
		srv.Close()
		tb.Fatal(err)
	}
	return srv
}

// valuesHeap iterates over the n values srv holds and returns the peak
// growth of the live heap during the iteration (sampled after a GC every
// 1000 values) and the number of read requests.
func valuesHeap(tb testing.TB, srv *thethingstest.Server, n int) (peak uint64, requests int) {
	tb.Helper()
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	c, err := NewClient("tok", WithBaseURL(srv.URL()), WithHTTPClient(hc))
	if err != nil {
		tb.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse
	count := 0
	for _, err := range c.Values(context.Background(), "big", nil) {
		if err != nil {
			tb.Fatal(err)
		}
		count++
		if count%1000 == 500 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > before {
				peak = max(peak, ms.HeapInuse-before)
			}
		}
	}
	if count != n {
		tb.Fatalf("got %d values, want %d", count, n)
	}
	hc.CloseIdleConnections()
	return peak, srv.Requests(thethingstest.RouteRead)
}

// BenchmarkValuesHeap shows that the memory Values holds does not grow with
// the length of the history. It times the iteration only: seeding the test
// server is not the SDK's work.
func BenchmarkValuesHeap(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			var peak uint64
			var reqs int
			for range b.N {
				b.StopTimer()
				srv := seededServer(b, n)
				b.StartTimer()
				peak, reqs = valuesHeap(b, srv, n)
				b.StopTimer()
				srv.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(peak), "peak-heap-B")
			b.ReportMetric(float64(reqs), "requests")
		})
	}
}

func TestValuesHeapDoesNotGrowWithN(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 110,000 values")
	}
	measure := func(n int) (uint64, int) {
		srv := seededServer(t, n)
		defer srv.Close()
		return valuesHeap(t, srv, n)
	}
	small, reqSmall := measure(10_000)
	large, reqLarge := measure(100_000)
	t.Logf("peak live heap growth: %d B at 10k values (%d requests), %d B at 100k values (%d requests)", small, reqSmall, large, reqLarge)
	// Ten times the values must not need ten times the memory; allow noise.
	if large > 2*small+(1<<20) {
		t.Errorf("peak heap growth %d B at 100k values vs %d B at 10k", large, small)
	}
}
