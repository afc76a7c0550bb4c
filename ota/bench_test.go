package ota

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/thethings-go/thethings/internal/fsys"
)

// zeroes is a payload reader of n bytes that holds none of them.
type zeroes struct{ n int64 }

func (z *zeroes) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n)
	clear(p[:k])
	z.n -= k
	return int(k), nil
}

// peakHeap runs iteration as the benchmark's loop, sampling the heap, and
// reports its peak above what was in use when it started (the server's
// copy of the bundle included), in MiB. Each iteration starts after a GC
// outside the timed part, so that the heap sampled during it is what it
// holds, not the garbage of the previous ones that the GC's pacing lets
// pile up.
func peakHeap(b *testing.B, iteration func()) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base, peak := read(), uint64(0)
	done, wg := make(chan struct{}), sync.WaitGroup{}
	wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, read())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		b.StartTimer()
		iteration()
	}
	close(done)
	wg.Wait()
	b.ReportMetric(float64(peak-min(peak, base))/(1<<20), "peak-heap-MiB")
}

// BenchmarkDownloadVerify is DownloadFirmware into the verifier, as
// Updater.Apply does, without the disk: the payload goes to io.Discard.
func BenchmarkDownloadVerify(b *testing.B) {
	pub := verifyKey
	for _, size := range []int64{64 << 20, 8 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			_, c, id := serve(b, "2", &zeroes{size})
			b.SetBytes(size)
			b.ReportAllocs()
			peakHeap(b, func() {
				v, _ := newVerifier(pub, io.Discard, nil)
				if _, err := c.DownloadFirmware(context.Background(), id, v, size+maxBundleExtra); err != nil {
					b.Fatal(err)
				}
				if _, err := v.finish(); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkDownloadPipeVerify is what a program composes from the public
// calls: DownloadFirmware into an io.Pipe, read by Verify.
func BenchmarkDownloadPipeVerify(b *testing.B) {
	for _, size := range []int64{64 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			_, c, id := serve(b, "2", &zeroes{size})
			b.SetBytes(size)
			b.ReportAllocs()
			peakHeap(b, func() {
				pr, pw := io.Pipe()
				go func() {
					_, err := c.DownloadFirmware(context.Background(), id, pw, size+1<<20)
					pw.CloseWithError(err)
				}()
				if _, err := Verify(pr, verifyKey, io.Discard); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkCopySHA256 is the floor: the same bytes from the same server
// over loopback, io.Copy into sha256.
func BenchmarkCopySHA256(b *testing.B) {
	for _, size := range []int64{64 << 20, 8 << 20} {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			srv, _, id := serve(b, "2", &zeroes{size})
			hc := &http.Client{}
			b.SetBytes(size)
			b.ReportAllocs()
			peakHeap(b, func() {
				resp, err := hc.Get(srv.URL() + "things/" + testToken + "/firmwares/download/" + id)
				if err != nil {
					b.Fatal(err)
				}
				h := sha256.New()
				_, err = io.Copy(h, resp.Body)
				resp.Body.Close()
				if err != nil {
					b.Fatal(err)
				}
			})
			hc.CloseIdleConnections()
		})
	}
}

// BenchmarkDownloadVerifyRatio times DownloadFirmware into the verifier and
// the io.Copy into sha256 of the same bytes in turns, in one run, and
// reports the ratio of their times: on a shared machine, whose load drifts
// between benchmarks, the ratio of interleaved runs is the figure that
// holds.
func BenchmarkDownloadVerifyRatio(b *testing.B) {
	const size = 64 << 20
	pub := verifyKey
	srv, c, id := serve(b, "2", &zeroes{size})
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	sdk := func() {
		v, _ := newVerifier(pub, io.Discard, nil)
		if _, err := c.DownloadFirmware(context.Background(), id, v, size+maxBundleExtra); err != nil {
			b.Fatal(err)
		}
		if _, err := v.finish(); err != nil {
			b.Fatal(err)
		}
	}
	floor := func() {
		resp, err := hc.Get(srv.URL() + "things/" + testToken + "/firmwares/download/" + id)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := io.Copy(sha256.New(), resp.Body); err != nil {
			b.Fatal(err)
		}
	}
	var tSDK, tFloor time.Duration
	i := 0
	for b.Loop() {
		runs := []func(){sdk, floor}
		times := []*time.Duration{&tSDK, &tFloor}
		if i%2 == 1 {
			runs[0], runs[1], times[0], times[1] = floor, sdk, &tFloor, &tSDK
		}
		for k, run := range runs {
			b.StopTimer() // a GC outside the timed part, as peakHeap does
			runtime.GC()
			b.StartTimer()
			start := time.Now()
			run()
			*times[k] += time.Since(start)
		}
		i++
	}
	b.ReportMetric(float64(tSDK)/float64(i)/1e6, "sdk-ms/op")
	b.ReportMetric(float64(tFloor)/float64(i)/1e6, "copy-sha256-ms/op")
	b.ReportMetric(float64(tSDK)/float64(tFloor), "ratio")
}

// BenchmarkBoot is what every start of the program pays: with no update
// pending, and on the trial run of a 16 MiB program (its SHA-256).
func BenchmarkBoot(b *testing.B) {
	for _, tc := range []struct {
		name  string
		size  int
		trial bool
	}{{"idle", 16 << 20, false}, {"trial-16MiB", 16 << 20, true}} {
		b.Run(tc.name, func(b *testing.B) {
			target := filepath.Join(b.TempDir(), "app")
			if err := os.WriteFile(target, make([]byte, tc.size), 0o755); err != nil {
				b.Fatal(err)
			}
			sum, err := fileSHA256(fsys.OS, target)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if tc.trial {
					b.StopTimer()
					if err := writeState(fsys.OS, target, state{Phase: phaseTrial, From: "1", To: "2", SHA256: sum}); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				if _, err := Boot(target); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
