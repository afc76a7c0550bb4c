package thethingstest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkWriteStore measures writes through the handler with the store
// in memory and in a data directory (each answer waits for its fsync):
// one value per request from one writer, from 16 at once (they share
// fsyncs), and 100 values per request.
func BenchmarkWriteStore(b *testing.B) {
	one := `{"values":[{"key":"k","value":21.5}]}`
	batch := `{"values":[` + strings.TrimSuffix(strings.Repeat(`{"key":"k","value":21.5},`, 100), ",") + `]}`
	// The two ways a Server keeps its data.
	stores := []struct {
		name string
		opts func() []Option
	}{
		{"memory", func() []Option { return nil }},
		// b.TempDir is on the machine's disk here (ext4), not a tmpfs,
		// so every fsync reaches the device.
		{"data-dir", func() []Option { return []Option{WithDataDir(b.TempDir())} }},
	}
	for _, st := range stores {
		for _, c := range []struct {
			name     string
			body     string
			values   int
			parallel bool
		}{{"1-value", one, 1, false}, {"1-value-16-writers", one, 1, true}, {"100-values", batch, 100, false}} {
			b.Run(st.name+"/"+c.name, func(b *testing.B) {
				s, err := New(append(st.opts(), WithThingTokens("tok"))...)
				require.NoError(b, err)
				defer s.Close()
				h := s.Handler()
				write := func() {
					req := httptest.NewRequest("POST", "/v2/things/tok", strings.NewReader(c.body))
					req.Header.Set("Content-Type", "application/json")
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusCreated {
						b.Error(w.Code, w.Body.String())
					}
				}
				b.ReportAllocs()
				start := time.Now()
				if c.parallel {
					b.SetParallelism(8) // 16 goroutines on 2 cores
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							write()
						}
					})
				} else {
					for b.Loop() {
						write()
					}
				}
				b.ReportMetric(float64(b.N*c.values)/time.Since(start).Seconds(), "values/s")
			})
		}
	}
}

// BenchmarkStart1M measures starting a Server that holds 1,000,000 values:
// in a data directory, the replay of its log; in memory, the nearest
// thing, seeding the same values. heap-MiB is the live heap with the
// Server open, after a GC.
func BenchmarkStart1M(b *testing.B) {
	const n = 1_000_000
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Value: json.RawMessage(fmt.Sprintf("%d.5", i%1000)), Datetime: base.Add(time.Duration(i) * time.Second)}
	}
	dir := b.TempDir()
	s, err := New(WithDataDir(dir), WithThingTokens("tok"))
	require.NoError(b, err)
	require.NoError(b, s.Seed("tok", "temperature", recs...))
	require.NoError(b, s.Close())
	fi, err := os.Stat(filepath.Join(dir, logName))
	require.NoError(b, err)

	heap := func(b *testing.B) float64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc) / (1 << 20)
	}
	b.Run("memory-seed", func(b *testing.B) {
		b.ReportAllocs()
		empty := heap(b)
		var live float64
		for b.Loop() {
			s, err := New(WithThingTokens("tok"))
			require.NoError(b, err)
			require.NoError(b, s.Seed("tok", "temperature", recs...))
			b.StopTimer()
			live = heap(b) - empty
			s.Close()
			b.StartTimer()
		}
		b.ReportMetric(live, "heap-MiB")
	})
	b.Run("data-dir-replay", func(b *testing.B) {
		b.ReportAllocs()
		empty := heap(b)
		var live float64
		for b.Loop() {
			s, err := New(WithDataDir(dir))
			require.NoError(b, err)
			b.StopTimer()
			if s.StoredCount("tok", "temperature") != n {
				b.Fatal("values missing")
			}
			live = heap(b) - empty
			s.Close()
			b.StartTimer()
		}
		b.ReportMetric(live, "heap-MiB")
		b.ReportMetric(float64(fi.Size())/(1<<20), "log-MiB")
	})
}
