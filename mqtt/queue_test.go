package mqtt_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/mqtt"
)

// pub1 encodes a QoS 1 PUBLISH with packet identifier id.
func pub1(topic string, id uint16, payload string) []byte {
	rest := 2 + len(topic) + 2 + len(payload)
	b := []byte{0x32}
	for {
		d := byte(rest & 0x7f)
		rest >>= 7
		if rest > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if rest == 0 {
			break
		}
	}
	b = append(b, byte(len(topic)>>8), byte(len(topic)))
	b = append(b, topic...)
	b = append(b, byte(id>>8), byte(id))
	return append(b, payload...)
}

// heapInUse returns the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

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
	url := rawBroker(t, func(c net.Conn, r *bufio.Reader) {
		if _, _, err := readPacket(r); err != nil {
			return
		}
		_, _ = c.Write([]byte{0x20, 2, 0, 0})
		for {
			typ, _, err := readPacket(r)
			if err != nil {
				return
			}
			if typ == subscribePacket {
				break
			}
		}
		_, _ = c.Write([]byte{0x90, 3, 0, 1, 1}) // paho numbers its first packet 1
		// The client reads on whatever the loop does; its PUBACKs, a few
		// bytes each, wait in the socket meanwhile.
		for i := range n {
			if _, err := c.Write(pub1(topic, uint16(i+1), big)); err != nil {
				return
			}
		}
		_, _ = c.Write(pub1(topic, n+1, `[{"key":"last","value":1}]`))
		// The client acknowledges a QoS 1 message once the Subscribe queue
		// took it or dropped it.
		for acked := 0; acked < n+1; {
			typ, _, err := readPacket(r)
			if err != nil {
				return
			}
			if typ == 4 {
				acked++
			}
		}
		close(allAcked)
	})
	c, err := mqtt.Dial(ctxT(t), token, mqtt.WithBroker(url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	base := heapInUse()
	ctx, cancel := context.WithCancel(ctxT(t))
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
			queued = heapInUse() - base
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
	srv := newServer(t, []string{token})
	c := dial(t, srv, token)
	var errs []error
	for _, err := range c.Subscribe(ctxT(t), mqtt.WithQueueBytes(1023)) {
		errs = append(errs, err)
	}
	if len(errs) != 1 || !errors.Is(errs[0], thethings.ErrInvalidOption) {
		t.Fatalf("Subscribe yielded %v, want one ErrInvalidOption", errs)
	}
}
