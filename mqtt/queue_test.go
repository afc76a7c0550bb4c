package mqtt_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/mqtt"
)

// A loop that falls behind holds its queue's bound in bytes, not a count
// of messages: 20 messages of 1 MB to a loop that reads none of them
// leave at most the default 8 MiB queued; the ones that did not fit come
// as DroppedErrors in their place, before the message after them.
func TestSubscribeQueueBoundedInBytes(t *testing.T) {
	const (
		n    = 20
		size = 1_000_000
	)
	topic := "v2/things/" + token
	big := `[{"key":"big","value":"` + strings.Repeat("a", size-len(`[{"key":"big","value":""}]`)) + `"}]`
	allAcked := make(chan struct{})
	var acked atomic.Int64
	h := newHostileBroker(t, func(typ byte, _ []byte, c net.Conn) bool {
		switch typ {
		case subscribePacket:
			if _, err := c.Write([]byte{0x90, 3, 0, 1, 1}); err != nil { // paho numbers its first packet 1
				return false
			}
			// The client reads on whatever the loop does; its PUBACKs, a
			// few bytes each, wait in the socket meanwhile.
			for i := range n {
				if _, err := c.Write(pub(topic, uint16(i+1), big)); err != nil {
					return false
				}
			}
			_, err := c.Write(pub(topic, n+1, `[{"key":"last","value":1}]`))
			return err == nil
		case 4:
			// The client acknowledges a QoS 1 message once the Subscribe
			// queue took it or dropped it.
			if acked.Add(1) == n+1 {
				close(allAcked)
			}
		}
		return true
	})
	c, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(h.url()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := int64(ms.HeapAlloc)
	ctx, cancel := context.WithCancel(testkit.Ctx(t, 0))
	defer cancel()
	var (
		got     []string
		dropped int
		queued  int64
	)
	for m, err := range c.Subscribe(ctx) {
		if len(got) == 0 { // the loop is slow: it waits for everything to arrive
			select {
			case <-allAcked:
			case <-ctx.Done():
				t.Fatal("the broker's messages were never all acknowledged")
			}
			runtime.GC()
			runtime.ReadMemStats(&ms)
			queued = int64(ms.HeapAlloc) - base
		}
		var de *mqtt.DroppedError
		switch {
		case errors.As(err, &de):
			dropped += de.Messages
			got = append(got, "dropped")
		case err != nil:
			t.Fatal(err)
		default:
			got = append(got, m.Values[0].Key)
		}
		if m.Values != nil && m.Values[0].Key == "last" {
			break
		}
	}
	t.Logf("queued %.1f MiB; %d of %d dropped", float64(queued)/(1<<20), dropped, n)
	if queued > 12<<20 {
		t.Errorf("the queue held %d MiB, want at most its 8 MiB and the message in hand", queued>>20)
	}
	// Which messages fit depends on when the loop took the first one off
	// the queue; every message is either delivered or counted as dropped,
	// in its place.
	seq := strings.Join(got, ",")
	if dropped == 0 || strings.Count(seq, "big")+dropped != n || !strings.HasSuffix(seq, ",dropped,last") {
		t.Fatalf("got %s with %d dropped: want %d big messages delivered or counted as dropped, then last", seq, dropped, n)
	}
}

// WithQueueBytes refuses a bound below 1 KiB; the sequence yields the
// error and ends.
func TestQueueBytesOption(t *testing.T) {
	_, c, _ := setup(t)
	var errs []error
	for _, err := range c.Subscribe(testkit.Ctx(t, 0), mqtt.WithQueueBytes(1023)) {
		errs = append(errs, err)
	}
	if len(errs) != 1 || !errors.Is(errs[0], thethings.ErrInvalidOption) {
		t.Fatalf("Subscribe yielded %v, want one ErrInvalidOption", errs)
	}
}
