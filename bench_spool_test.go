//go:build unix

package thethings

// Benchmarks of the exactly-once Writer and its spool; run them with
//
//	go test -run '^$' -bench 'SpooledWriter|SpoolOffline|SpoolOpen' -benchtime 3x

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/thethings-go/thethings/internal/spool"
	"github.com/thethings-go/thethings/thethingstest"
)

// BenchmarkSpooledWriter: 4 goroutines each Add 100 values at a time to one
// Writer, in memory or spooled, against the test server in this process.
// One op is one value. cpu-ns/value counts the whole process, test server
// included, so the two variants are compared on the same terms.
func BenchmarkSpooledWriter(b *testing.B) {
	// cpuTime is the CPU time (user and system) this process has used.
	cpuTime := func(b *testing.B) time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for _, spooled := range []bool{false, true} {
		name := "memory"
		if spooled {
			name = "spool"
		}
		b.Run(name, func(b *testing.B) {
			srv := thethingstest.NewServer(b, thethingstest.WithThingTokens(benchToken))
			c, err := NewClient(benchToken, WithBaseURL(srv.URL()))
			if err != nil {
				b.Fatal(err)
			}
			opts := []WriterOption{WithFlushInterval(10 * time.Millisecond)}
			if spooled {
				opts = append(opts, WithSpool(b.TempDir()))
			}
			w, err := c.NewWriter(opts...)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			const per, workers = 100, 4
			adds := (b.N + per - 1) / per
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			var wg sync.WaitGroup
			for g := range workers {
				wg.Go(func() {
					vals := make([]Value, per)
					for a := g; a < adds; a += workers {
						for i := range vals {
							vals[i] = Value{Key: "t", Value: a*per + i}
						}
						if err := w.Add(ctx, vals...); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := w.Close(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			n := adds * per
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "values/s")
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(n), "cpu-ns/value")
			if got := srv.StoredCount(benchToken, "t"); got != n {
				b.Fatalf("stored %d, want %d", got, n)
			}
		})
	}
}

// BenchmarkSpoolOfflineHeap: 1,000,000 values added to a spooled Writer
// that cannot reach the platform. The live heap it holds (the heap's growth
// from before the client was made) after 100,000 and after 1,000,000 values
// shows that the spool is on disk, not in memory.
func BenchmarkSpoolOfflineHeap(b *testing.B) {
	live := func() float64 {
		// Two collections: sync.Pool frees its caches (Add's pooled copy
		// of the last 1,000 values) at the second.
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc) / (1 << 20)
	}
	for range b.N {
		base := live() // the test binary's own heap
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c, err := NewClient(benchToken, WithBaseURL("http://"+addr+"/v2/"), WithRetry(RetryPolicy{MaxRetries: 0, MinWait: time.Second, MaxWait: time.Second}))
		if err != nil {
			b.Fatal(err)
		}
		w, err := c.NewWriter(WithSpool(b.TempDir()), WithSpoolLimit(1<<30))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		vals := make([]Value, 1000)
		var at100k float64
		for a := range 1000 {
			for i := range vals {
				vals[i] = Value{Key: "t", Value: a*1000 + i}
			}
			if err := w.Add(ctx, vals...); err != nil {
				b.Fatal(err)
			}
			if a == 99 {
				at100k = live() - base
			}
		}
		at1m := live() - base
		if p := w.Stats().Pending; p != 1_000_000 {
			b.Fatalf("pending %d", p)
		}
		b.ReportMetric(at100k, "held-MiB@100k")
		b.ReportMetric(at1m, "held-MiB@1M")
		cctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		_ = w.Close(cctx)
		cancel()
	}
}

// BenchmarkSpoolOpen: opening a spool that holds 100,000 and 1,000,000
// values, which reads and checks every record once. B/op shows that the
// memory it takes does not grow with the values waiting.
func BenchmarkSpoolOpen(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			dir := b.TempDir()
			opts := spool.Options{Limit: 1 << 30, Batch: defaultBatchSize, Owner: owner(benchToken)}
			l, err := spool.Open(dir, opts)
			if err != nil {
				b.Fatal(err)
			}
			vals := make([]Value, 10_000)
			at := time.Now()
			for a := 0; a < n; a += len(vals) {
				for i := range vals {
					vals[i] = Value{Key: "t", Value: a + i, Datetime: at}
				}
				recs, err := encodeRecords(vals, nil)
				if err != nil {
					b.Fatal(err)
				}
				ticket, _, err := l.Append(recs, len(vals))
				if err == nil {
					err = l.Sync(ticket)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				l, err := spool.Open(dir, opts)
				if err != nil {
					b.Fatal(err)
				}
				if l.Pending() != n {
					b.Fatalf("pending %d", l.Pending())
				}
				l.Close()
			}
		})
	}
}
