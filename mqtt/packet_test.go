package mqtt_test

import (
	"bufio"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/mqtt"
)

// rawBroker runs script on every connection a raw TCP listener accepts,
// and closes everything when the test ends.
func rawBroker(t *testing.T, script func(c net.Conn, r *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				script(c, bufio.NewReader(c))
				_, _ = c.Read(make([]byte, 1)) // hold the connection until the client or the test ends it
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "tcp://" + ln.Addr().String()
}

// huge is a fixed header declaring the protocol's largest remaining
// length, 256 MiB - 1, for packet type typ.
func huge(typ byte) []byte { return []byte{typ << 4, 0xff, 0xff, 0xff, 0x7f} }

// allocated returns the bytes allocated on the heap so far.
func allocated() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// A broker's fixed header declaring 256 MiB is refused as it arrives:
// the client allocates nothing of that size, and says why with an error
// matching ErrPacketTooLarge, whether it comes in place of the CONNACK or
// after the subscription.
func TestHugePacketHeaderRefusedBeforeAllocation(t *testing.T) {
	const most = 32 << 20 // far below the 256 MiB the header asks for
	t.Run("in place of CONNACK", func(t *testing.T) {
		url := rawBroker(t, func(c net.Conn, r *bufio.Reader) {
			if _, _, err := readPacket(r); err == nil {
				_, _ = c.Write(huge(2))
			}
		})
		before := allocated()
		_, err := mqtt.Dial(ctxT(t), token, mqtt.WithBroker(url))
		grew := allocated() - before
		if grew > most {
			t.Errorf("Dial allocated %d MiB", grew>>20)
		}
		t.Logf("allocated %d KiB", grew>>10)
		if !errors.Is(err, mqtt.ErrPacketTooLarge) || strings.Contains(err.Error(), token) {
			t.Fatalf("Dial = %v, want ErrPacketTooLarge", err)
		}
	})
	t.Run("after the subscription", func(t *testing.T) {
		url := rawBroker(t, func(c net.Conn, r *bufio.Reader) {
			if _, _, err := readPacket(r); err != nil {
				return
			}
			_, _ = c.Write([]byte{0x20, 2, 0, 0}) // CONNACK
			for {
				typ, body, err := readPacket(r)
				if err != nil {
					return
				}
				if typ == subscribePacket {
					_, _ = c.Write(append([]byte{0x90, 3, body[0], body[1], 1}, huge(publish)...))
					return
				}
			}
		})
		c, err := mqtt.Dial(ctxT(t), token, mqtt.WithBroker(url))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		before := allocated()
		var got error
		for _, err := range c.Subscribe(ctxT(t)) {
			got = err
			break
		}
		grew := allocated() - before
		if grew > most {
			t.Errorf("the client allocated %d MiB", grew>>20)
		}
		t.Logf("allocated %d KiB", grew>>10)
		if !errors.Is(got, mqtt.ErrPacketTooLarge) || !strings.HasPrefix(got.Error(), "thethings: mqtt: ") || strings.Contains(got.Error(), token) {
			t.Fatalf("Subscribe yielded %v, want ErrPacketTooLarge", got)
		}
	})
}

// pubSized encodes a QoS 0 PUBLISH of exactly size bytes (128..16383
// remaining bytes), carrying one value.
func pubSized(topic string, size int) []byte {
	rest := size - 3 // type byte and two length bytes
	payload := `[{"key":"k","value":"` + strings.Repeat("a", rest-2-len(topic)-len(`[{"key":"k","value":""}]`)) + `"}]`
	b := []byte{0x30, byte(rest&0x7f | 0x80), byte(rest >> 7), byte(len(topic) >> 8), byte(len(topic))}
	return append(append(b, topic...), payload...)
}

// WithMaxPacketSize counts the whole packet: one of exactly the limit
// passes, one byte more is refused. Packets cut in single bytes or sent
// together are parsed alike.
func TestMaxPacketSizeBoundary(t *testing.T) {
	const limit = 2048
	topic := "v2/things/" + token
	for _, split := range []bool{false, true} {
		url := rawBroker(t, func(c net.Conn, r *bufio.Reader) {
			if _, _, err := readPacket(r); err != nil {
				return
			}
			_, _ = c.Write([]byte{0x20, 2, 0, 0})
			for {
				typ, body, err := readPacket(r)
				if err != nil {
					return
				}
				if typ != subscribePacket {
					continue
				}
				out := append([]byte{0x90, 3, body[0], body[1], 1}, pubSized(topic, limit)...)
				out = append(out, pubSized(topic, limit+1)...)
				if !split {
					_, _ = c.Write(out)
					return
				}
				for _, b := range out {
					if _, err := c.Write([]byte{b}); err != nil {
						return
					}
				}
				return
			}
		})
		c, err := mqtt.Dial(ctxT(t), token, mqtt.WithBroker(url), mqtt.WithMaxPacketSize(limit))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for m, err := range c.Subscribe(ctxT(t)) {
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
		if _, err := mqtt.Dial(ctxT(t), token, mqtt.WithMaxPacketSize(n)); !errors.Is(err, thethings.ErrInvalidOption) {
			t.Errorf("WithMaxPacketSize(%d): %v, want ErrInvalidOption", n, err)
		}
	}
}
