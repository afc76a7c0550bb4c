package mqtt

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// fixedHeaders walks the MQTT fixed headers of the packets in b: for the
// packet each header byte belongs to, its header bytes so far and the
// remaining length they declare so far. It stops at the end of b, leaving
// the state of the packet b ends in.
type fixedHeaders struct {
	inLength bool
	header   int // bytes of the fixed header so far
	length   int // remaining length declared so far
	body     int // body bytes to skip
}

// step takes one byte of the stream; declared is header+length so far
// when it was a byte of a remaining length, -1 otherwise, and more
// whether that length goes on.
func (h *fixedHeaders) step(b byte) (declared int, more bool) {
	switch {
	case h.body > 0:
		h.body--
		return -1, false
	case !h.inLength:
		h.inLength, h.header, h.length = true, 1, 0
		return -1, false
	}
	h.length += int(b&0x7f) << (7 * (h.header - 1))
	h.header++
	if b&0x80 == 0 {
		h.inLength, h.body = false, h.length
	}
	return h.header + h.length, b&0x80 != 0
}

// fuzzChunks reads at most the next size in sizes bytes at a time.
type fuzzChunks struct {
	r     io.Reader
	sizes []byte
	i     int
}

func (c *fuzzChunks) Read(p []byte) (int, error) {
	n := len(p)
	if len(c.sizes) > 0 {
		n = min(n, 1+int(c.sizes[c.i%len(c.sizes)]%32))
		c.i++
	}
	return c.r.Read(p[:n])
}

// FuzzGuard reads an arbitrary byte stream through the packet-size guard,
// in arbitrary pieces, with a small limit. The guard hands over a prefix
// of the stream in which no fixed header declares (even in part) more
// than the limit; it stops only at the end of the stream (io.EOF, having
// handed over everything), at the length byte that takes a packet over the
// limit (ErrPacketTooLarge, and so on every read after), or at a fifth
// length byte (malformed).
func FuzzGuard(f *testing.F) {
	f.Add(append(packet(3), packet(40)...), uint8(60), []byte{3, 1, 7})
	f.Add(packet(61), uint8(60), []byte{}) // 63 bytes: over a limit of 62
	f.Add(packet(60), uint8(60), []byte{0})
	f.Add(packet(200), uint8(255), []byte{1}) // two length bytes
	f.Add([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, uint8(255), []byte{})
	f.Add([]byte{0x30, 0x80, 0x80, 0x80, 0x00}, uint8(0), []byte{})
	f.Add([]byte{0xc0, 0x00, 0xd0, 0x00, 0x30}, uint8(0), []byte{2})
	f.Add([]byte{}, uint8(0), []byte{})

	f.Fuzz(func(t *testing.T, stream []byte, limit uint8, sizes []byte) {
		max := 2 + int(limit) // a small limit: 2..257 bytes
		g := guard(&memConn{r: &fuzzChunks{r: bytes.NewReader(stream), sizes: sizes}}, max)
		var out []byte
		var err error
		buf := make([]byte, 64)
		for reads := 0; err == nil; reads++ {
			if reads > len(stream)+2 {
				t.Fatalf("%d reads of a %d-byte stream", reads, len(stream))
			}
			var n int
			n, err = g.Read(buf[:1+reads%len(buf)])
			out = append(out, buf[:n]...)
		}
		if !bytes.HasPrefix(stream, out) {
			t.Fatalf("handed over %x, not a prefix of the stream %x", out, stream)
		}
		var h fixedHeaders
		for i, b := range out {
			if declared, more := h.step(b); declared > max {
				t.Fatalf("handed over byte %d of a packet header declaring %d bytes or more, over the limit of %d", i, declared, max)
			} else if more && h.header == 5 {
				t.Fatalf("handed over a fifth remaining-length byte at %d", i)
			}
		}
		if err == io.EOF {
			if len(out) != len(stream) {
				t.Fatalf("io.EOF after %d bytes of %d", len(out), len(stream))
			}
			return
		}
		if len(out) == len(stream) {
			t.Fatalf("%v after the whole stream", err)
		}
		declared, more := h.step(stream[len(out)])
		switch {
		case declared > max:
			if !errors.Is(err, ErrPacketTooLarge) {
				t.Fatalf("stopped at a header declaring %d bytes, over %d: %v, want ErrPacketTooLarge", declared, max, err)
			}
		case more && h.header == 5:
			if err == nil || errors.Is(err, ErrPacketTooLarge) {
				t.Fatalf("stopped at a fifth remaining-length byte: %v, want a malformed-packet error", err)
			}
		default:
			t.Fatalf("stopped at byte %d, which breaks nothing: %v", len(out), err)
		}
		if _, again := g.Read(buf); !errors.Is(again, err) {
			t.Fatalf("a read after %v: %v", err, again)
		}
	})
}
