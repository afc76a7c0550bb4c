package mqtt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// memConn is a net.Conn that reads from a buffer.
type memConn struct {
	net.Conn
	r io.Reader
}

func (m *memConn) Read(p []byte) (int, error) { return m.r.Read(p) }

// packet encodes a PUBLISH whose remaining length is n (n >= 3).
func packet(n int) []byte {
	b := binary.AppendUvarint([]byte{0x30}, uint64(n)) // MQTT's remaining length is a varint as Go's
	b = append(b, 0, 1, 't')
	return append(b, bytes.Repeat([]byte{'x'}, n-3)...)
}

// chunked reads at most a few bytes at a time, in lengths from rnd.
type chunked struct {
	r   io.Reader
	rnd *rand.Rand
}

func (c *chunked) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), 1+c.rnd.IntN(7))])
}

// The guard hands over every byte of packets within the limit, whatever
// the reads' sizes, and fails at the length byte of the first packet over
// it, having handed over nothing of that packet past its header's start.
func TestGuardStream(t *testing.T) {
	const limit = 20_000
	sizes := []int{3, 3, 124, 125, 126, 16380, 16381, 16383, 16384, limit - 4, 3, 200} // limit-4: exactly limit bytes with its 4-byte header
	for seed := range uint64(50) {
		rnd := rand.New(rand.NewPCG(seed, 1))
		var stream []byte
		for _, n := range sizes {
			stream = append(stream, packet(n)...)
		}
		okLen := len(stream)
		bad := packet(limit - 3) // one byte over
		stream = append(stream, bad...)
		g := guard(&memConn{r: &chunked{r: bytes.NewReader(stream), rnd: rnd}}, limit)
		got, err := io.ReadAll(g)
		if !errors.Is(err, ErrPacketTooLarge) {
			t.Fatalf("seed %d: err %v, want ErrPacketTooLarge", seed, err)
		}
		if len(got) < okLen || len(got) >= okLen+4 || !bytes.Equal(got, stream[:len(got)]) {
			t.Fatalf("seed %d: handed over %d bytes, want the %d of the packets within the limit and no more than the bad header's first bytes", seed, len(got), okLen)
		}
		if _, err := g.Read(make([]byte, 10)); !errors.Is(err, ErrPacketTooLarge) {
			t.Fatalf("seed %d: a read after the refusal: %v", seed, err)
		}
	}
}

// A remaining length of more than four bytes is malformed.
func TestGuardMalformedLength(t *testing.T) {
	g := guard(&memConn{r: bytes.NewReader([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01})}, maxPacketSize)
	if _, err := io.ReadAll(g); err == nil || errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("err %v, want a malformed-packet error", err)
	}
}

// BenchmarkGuardReadPacket reads typical PUBLISH packets (120 bytes) with
// paho's own reader, straight from memory and through the guard: the cost
// of the guard per packet, without the system calls its buffer saves.
func BenchmarkGuardReadPacket(b *testing.B) {
	one := packet(118)
	stream := bytes.Repeat(one, 1000)
	for _, guarded := range []bool{false, true} {
		name := "direct"
		if guarded {
			name = "guarded"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(one)))
			var r io.Reader
			src := bytes.NewReader(stream)
			for i := 0; b.Loop(); i++ {
				if i%1000 == 0 {
					src.Reset(stream)
					r = src
					if guarded {
						r = guard(&memConn{r: src}, DefaultMaxPacketSize)
					}
				}
				if _, err := packets.ReadPacket(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
