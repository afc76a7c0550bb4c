package mqtt_test

// Benchmarks of MQTT against REST, both against the test server over
// loopback. Run them with
//
//	go test -run '^$' -bench . -benchmem ./mqtt

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/mqtt"
)

// BenchmarkSingleWrites writes one value per call, one call after the
// other: MQTT at QoS 1 (each waits for the broker's PUBACK), at QoS 0, and
// REST (each waits for the HTTP answer). values/s is the figure to compare.
func BenchmarkSingleWrites(b *testing.B) {
	run := func(b *testing.B, write func(context.Context, []thethings.Value) error) {
		ctx := context.Background()
		vals := []thethings.Value{{Key: "temp", Value: 21.5}}
		b.ReportAllocs()
		for b.Loop() {
			if err := write(ctx, vals); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "values/s")
	}
	b.Run("mqtt-qos1", func(b *testing.B) {
		_, c, _ := setup(b)
		run(b, c.Write)
	})
	b.Run("mqtt-qos0", func(b *testing.B) {
		srv, c, _ := setup(b, mqtt.WithQoS(0))
		run(b, c.Write)
		// QoS 0 returns when the message is on the wire; let the server
		// catch up before it closes.
		testkit.Eventually(b, "the server stored every value", func() bool { return srv.StoredCount(token, "temp") >= b.N })
	})
	b.Run("rest", func(b *testing.B) {
		_, _, rest := setup(b)
		run(b, func(ctx context.Context, v []thethings.Value) error { return rest.Write(ctx, v) })
	})
}

// BenchmarkPublishToMessage measures the time from a write to the message
// a subscriber of the same thing receives: an MQTT Write to an MQTT
// Subscribe, and a REST Write to a REST Subscribe. It reports p50 and p99.
func BenchmarkPublishToMessage(b *testing.B) {
	measure := func(b *testing.B, write func(context.Context, []thethings.Value) error, sub func(context.Context) func(func(thethings.Message, error) bool), srv *server) {
		ctx, cancel := context.WithCancel(context.Background())
		received := make(chan time.Time, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, err := range sub(ctx) {
				if err != nil {
					continue
				}
				received <- time.Now()
			}
		}()
		if !testkit.Eventually(b, "subscribed", func() bool { return srv.OpenSubscriptions() > 0 }) {
			cancel()
			<-done
			return
		}
		vals := []thethings.Value{{Key: "latency", Value: 1}}
		var lat []time.Duration
		b.ReportAllocs()
		for b.Loop() {
			start := time.Now()
			if err := write(ctx, vals); err != nil {
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
	b.Run("mqtt", func(b *testing.B) {
		srv, c, _ := setup(b)
		measure(b, c.Write, func(ctx context.Context) func(func(thethings.Message, error) bool) { return c.Subscribe(ctx) }, srv)
	})
	b.Run("rest", func(b *testing.B) {
		srv, _, rest := setup(b)
		measure(b, func(ctx context.Context, v []thethings.Value) error { return rest.Write(ctx, v) },
			func(ctx context.Context) func(func(thethings.Message, error) bool) { return rest.Subscribe(ctx) }, srv)
	})
}
