package main

import (
	"context"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// benchValues is the history read by the benchmark and the memory test.
const benchValues = 100_000

// BenchmarkReadCSV measures read's throughput: the whole history of one key
// (100,000 values) from the test server over loopback to CSV.
func BenchmarkReadCSV(b *testing.B) {
	srv, tok := setup(b)
	seed(b, srv, tok, "bench", benchValues)
	_, env := cliEnv(srv.URL(), tok)
	start := time.Now()
	n := 0
	for b.Loop() {
		var out countingWriter
		if code := run(context.Background(), []string{"read", "bench"}, strings.NewReader(""), &out, io.Discard, env); code != 0 {
			b.Fatalf("exit status %d", code)
		}
		if out.lines != benchValues+1 {
			b.Fatalf("%d lines, want %d", out.lines, benchValues+1)
		}
		n++
	}
	b.ReportMetric(float64(n*benchValues)/time.Since(start).Seconds(), "values/s")
}

type countingWriter struct{ lines int }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.lines += strings.Count(string(p), "\n")
	return len(p), nil
}

// heapWriter discards what read prints and, at every write (every 64 KiB
// of output, about 1500 values), records the live heap at its peak.
type heapWriter struct{ peak uint64 }

func (w *heapWriter) Write(p []byte) (int, error) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.peak = max(w.peak, ms.HeapAlloc)
	return len(p), nil
}

// TestReadMemoryFlat reads 10,000 and 100,000 values: the live heap grows
// by about one page either way, not in proportion to the values (100,000
// values held at once would take over 10 MiB).
func TestReadMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 110,000 values")
	}
	srv, tok := setup(t)
	seed(t, srv, tok, "small", benchValues/10)
	seed(t, srv, tok, "large", benchValues)
	_, env := cliEnv(srv.URL(), tok)
	growth := func(key string) uint64 {
		w := &heapWriter{}
		_, _ = w.Write(nil) // the live heap before the read: the growth is never below 0
		base := w.peak
		code := run(context.Background(), []string{"read", key}, strings.NewReader(""), w, io.Discard, env)
		require.Equal(t, 0, code)
		return w.peak - base
	}
	small, large := growth("small"), growth("large")
	t.Logf("live heap growth: %d KiB reading %d values, %d KiB reading %d", small>>10, benchValues/10, large>>10, benchValues)
	assert.Less(t, large, uint64(4<<20), "reading 100,000 values holds at most a few pages")
	assert.Less(t, large, small+2<<20, "reading ten times the values takes no more memory")
}
