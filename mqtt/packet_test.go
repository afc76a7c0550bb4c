package mqtt_test

import (
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/mqtt"
)

// hugeLength is the protocol's largest remaining length, 256 MiB - 1: a
// fixed header is the packet type's byte and these.
var hugeLength = []byte{0xff, 0xff, 0xff, 0x7f}

// A broker's fixed header declaring 256 MiB is refused as it arrives:
// the client allocates nothing of that size, and says why with an error
// matching ErrPacketTooLarge, whether it comes in place of the CONNACK or
// after the subscription.
func TestHugePacketHeaderRefusedBeforeAllocation(t *testing.T) {
	const most = 32 << 20 // far below the 256 MiB the header asks for
	t.Run("in place of CONNACK", func(t *testing.T) {
		h := newHostileBroker(t, func(byte, []byte, net.Conn) bool { return true })
		connack := append([]byte{2 << 4}, hugeLength...)
		h.connack.Store(&connack)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(h.url()))
		runtime.ReadMemStats(&after)
		grew := after.TotalAlloc - before.TotalAlloc
		if grew > most {
			t.Errorf("Dial allocated %d MiB", grew>>20)
		}
		t.Logf("allocated %d KiB", grew>>10)
		if !errors.Is(err, mqtt.ErrPacketTooLarge) || strings.Contains(err.Error(), token) {
			t.Fatalf("Dial = %v, want ErrPacketTooLarge", err)
		}
	})
	t.Run("after the subscription", func(t *testing.T) {
		h := newHostileBroker(t, func(typ byte, body []byte, c net.Conn) bool {
			if typ == subscribePacket {
				_, err := c.Write(append([]byte{0x90, 3, body[0], body[1], 1, publish << 4}, hugeLength...))
				return err == nil
			}
			return true
		})
		c, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(h.url()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var got error
		for _, err := range c.Subscribe(testkit.Ctx(t, 0)) {
			got = err
			break
		}
		runtime.ReadMemStats(&after)
		grew := after.TotalAlloc - before.TotalAlloc
		if grew > most {
			t.Errorf("the client allocated %d MiB", grew>>20)
		}
		t.Logf("allocated %d KiB", grew>>10)
		if !errors.Is(got, mqtt.ErrPacketTooLarge) || !strings.HasPrefix(got.Error(), "thethings: mqtt: ") || strings.Contains(got.Error(), token) {
			t.Fatalf("Subscribe yielded %v, want ErrPacketTooLarge", got)
		}
	})
}

// WithMaxPacketSize counts the whole packet: one of exactly the limit
// passes, one byte more is refused. Packets cut in single bytes or sent
// together are parsed alike.
func TestMaxPacketSizeBoundary(t *testing.T) {
	const limit = 2048
	topic := "v2/things/" + token
	// A QoS 0 PUBLISH of exactly size bytes (three of them its fixed
	// header), carrying one value.
	sized := func(size int) []byte {
		fill := size - 3 - 2 - len(topic) - len(`[{"key":"k","value":""}]`)
		return pub(topic, 0, `[{"key":"k","value":"`+strings.Repeat("a", fill)+`"}]`)
	}
	if n := len(sized(limit)); n != limit {
		t.Fatalf("the packet at the limit has %d bytes", n)
	}
	for _, split := range []bool{false, true} {
		h := newHostileBroker(t, func(typ byte, body []byte, c net.Conn) bool {
			if typ != subscribePacket {
				return true
			}
			out := append([]byte{0x90, 3, body[0], body[1], 1}, sized(limit)...)
			out = append(out, sized(limit+1)...)
			if !split {
				_, err := c.Write(out)
				return err == nil
			}
			for _, b := range out {
				if _, err := c.Write([]byte{b}); err != nil {
					return false
				}
			}
			return true
		})
		c, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(h.url()), mqtt.WithMaxPacketSize(limit))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for m, err := range c.Subscribe(testkit.Ctx(t, 0)) {
			switch {
			case errors.Is(err, mqtt.ErrPacketTooLarge):
				got = append(got, "too large")
			case err != nil:
				got = append(got, err.Error())
			default:
				got = append(got, m.Values[0].Key)
			}
			if len(got) == 2 {
				break
			}
		}
		c.Close()
		if strings.Join(got, ",") != "k,too large" {
			t.Fatalf("split %v: got %q, want the packet at the limit, then ErrPacketTooLarge", split, got)
		}
	}
}

// WithMaxPacketSize refuses a limit below 1 KiB or above the protocol's.
func TestMaxPacketSizeOption(t *testing.T) {
	for _, n := range []int{0, 1023, 256<<20 + 6} {
		if _, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithMaxPacketSize(n)); !errors.Is(err, thethings.ErrInvalidOption) {
			t.Errorf("WithMaxPacketSize(%d): %v, want ErrInvalidOption", n, err)
		}
	}
}
