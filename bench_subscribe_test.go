package thethings

// Benchmarks of the subscription. Run them with
//
//	go test -run '^$' -bench 'SubscribeFrames|SubscribeKeepAlives|SubscribeLatency' -benchmem
//	go test -run '^$' -bench 'Subscriptions5000' -benchtime=1x -benchmem

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thethings-go/thethings/internal/stream"
	"github.com/thethings-go/thethings/internal/wire"
	"github.com/thethings-go/thethings/thethingstest"
)

// BenchmarkSubscribeFrames: from the bytes of a stream to the Messages the
// loop receives (framing, item decoding with exact numbers and datetimes,
// conversion to Value), against json.Unmarshal of each frame, already cut,
// into []struct{Key string; Value any}. One op is 64 frames.
func BenchmarkSubscribeFrames(b *testing.B) {
	// Data frames as the emulator sends them, shared with internal/wire's
	// fuzz test as seeds.
	data, err := os.ReadFile("internal/wire/testdata/frames.txt")
	if err != nil {
		b.Fatal(err)
	}
	frames := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	data = bytes.Join(frames, nil)
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
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
	b.Run("subscribe", func(b *testing.B) {
		c, err := NewClient(benchToken)
		if err != nil {
			b.Fatal(err)
		}
		cfg, _ := newSubscribeConfig(nil)
		s := newSubscriber(c, cfg, nil)
		now := time.Now()
		r := bytes.NewReader(data)
		wd := stream.NewWatchdog(time.Hour, func(error) {}, nil)
		defer wd.Stop()
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			r.Reset(data)
			// As connect reads: every read feeds the watchdog.
			d := stream.NewDecoder(&feeder{r: r, wd: wd}, cfg.maxFrame)
			for {
				f, err := d.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				items, err := wire.DecodeFrameEach(f)
				if err != nil {
					b.Fatal(err)
				}
				if msg := s.live(items, now); len(msg.Values) == 0 {
					b.Fatal("no values")
				}
			}
		}
	})
}

// BenchmarkSubscribeLatency: the time from the start of a write to the
// Message in the subscriber's loop, through the emulator on loopback, one
// write at a time. It reports the median and the 99th percentile; run it
// with -benchtime=1000x for 1,000 writes.
func BenchmarkSubscribeLatency(b *testing.B) {
	srv := thethingstest.NewServer(b, thethingstest.WithThingTokens(benchToken))
	c, err := NewClient(benchToken, WithBaseURL(srv.URL()))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	connected := make(chan struct{})
	received := make(chan time.Time)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, err := range c.Subscribe(ctx, WithStateHandler(func(s State, _ error) {
			if s == StateConnected {
				close(connected)
			}
		})) {
			if err != nil {
				return
			}
			received <- time.Now()
		}
	}()
	<-connected
	var lat []time.Duration
	vals := []Value{{Key: "latency", Value: 1}}
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if err := c.Write(ctx, vals); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-received).Sub(start))
	}
	b.StopTimer()
	cancel()
	<-done
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSubscriptions5000 holds 5,000 concurrent subscriptions to the
// emulator in one process and checks that all of them receive one
// broadcast write. It measures memory as heap in use plus goroutine stacks
// after a GC, per subscription:
//
//   - total-KiB/sub: both ends of every connection, the SDK's and the
//     emulator's, as they grow while the subscriptions open;
//   - emulator-KiB/sub: the emulator's end alone, measured first with 5,000
//     bare subscriptions (a raw connection each, nothing read);
//   - sdk-KiB/sub: the difference, what a subscription costs the process
//     that holds it: the SDK's state, the HTTP transport's connection and
//     the goroutine ranging over it.
//
// Run it with -benchtime=1x.
func BenchmarkSubscriptions5000(b *testing.B) {
	const n = 5000
	// memInUse is heap in use plus goroutine stacks, after a GC.
	memInUse := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	for b.Loop() {
		// The emulator's side: n subscriptions on raw connections that read
		// nothing past the subscribed frame, plus a negligible net.Conn each.
		emu := func() float64 {
			srv := thethingstest.NewServer(b, thethingstest.WithThingTokens(benchToken))
			defer srv.Close()
			u, err := url.Parse(srv.URL())
			if err != nil {
				b.Fatal(err)
			}
			req := "GET " + u.Path + "things/" + benchToken + "?keepAlive=60000 HTTP/1.1\r\nHost: " + u.Host + "\r\n\r\n"
			before := memInUse()
			conns := make([]net.Conn, 0, n)
			defer func() {
				for _, c := range conns {
					_ = c.Close()
				}
			}()
			for range n {
				conn, err := net.Dial("tcp", u.Host)
				if err != nil {
					b.Fatal(err)
				}
				conns = append(conns, conn)
				if _, err := io.WriteString(conn, req); err != nil {
					b.Fatal(err)
				}
			}
			// Each is open once its subscribed frame came: the emulator counts it
			// before it sends that.
			buf := make([]byte, 4<<10)
			for i, conn := range conns {
				_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				var got []byte
				for !bytes.Contains(got, []byte("subscribed")) {
					k, err := conn.Read(buf)
					if err != nil {
						b.Fatalf("bare subscription %d of %d: %v", i+1, n, err)
					}
					got = append(got, buf[:k]...)
				}
			}
			if open := srv.OpenSubscriptions(); open != n {
				b.Fatalf("%d of %d bare subscriptions open", open, n)
			}
			return float64(memInUse()-before) / float64(n)
		}()

		srv := thethingstest.NewServer(b, thethingstest.WithThingTokens(benchToken))
		c, err := NewClient(benchToken, WithBaseURL(srv.URL())) // the default stream client
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())

		before := memInUse()
		var connected, ended sync.WaitGroup
		var got atomic.Int32
		connected.Add(n)
		ended.Add(n)
		received := make(chan struct{}, n)
		for range n {
			go func() {
				defer ended.Done()
				var once sync.Once
				for msg, err := range c.Subscribe(ctx, WithStateHandler(func(s State, _ error) {
					if s == StateConnected {
						once.Do(connected.Done)
					}
				})) {
					if err != nil {
						return
					}
					if len(msg.Values) == 1 && msg.Values[0].Key == "broadcast" {
						got.Add(1)
						received <- struct{}{}
					}
				}
			}()
		}
		connected.Wait()
		total := float64(memInUse()-before) / n

		start := time.Now()
		if err := c.Write(ctx, []Value{{Key: "broadcast", Value: "all"}}); err != nil {
			b.Fatal(err)
		}
		for range n {
			select {
			case <-received:
			case <-time.After(30 * time.Second):
				b.Fatalf("only %d of %d subscriptions received the broadcast", got.Load(), n)
			}
		}
		fanout := time.Since(start)
		cancel()
		ended.Wait()
		c.stream.CloseIdleConnections()
		_ = srv.Close()

		b.ReportMetric(total/1024, "total-KiB/sub")
		b.ReportMetric(emu/1024, "emulator-KiB/sub")
		b.ReportMetric((total-emu)/1024, "sdk-KiB/sub")
		b.ReportMetric(float64(fanout.Milliseconds()), "broadcast-ms")
		b.ReportMetric(float64(got.Load()), "received")
	}
}
