package mqtt

import (
	"bufio"
	"errors"
	"net"
	"sync"

	"github.com/thethings-go/thethings/internal/wire"
)

// ErrPacketTooLarge: the broker sent a packet whose fixed header declares
// more than the limit (see [WithMaxPacketSize]). The connection is closed
// before the packet is read, so nothing of its size is allocated; the
// Client reconnects as after any dropped link. A Subscribe loop receives
// the error (its sequence goes on), and Dial or Activate fail with it when
// the packet comes before the broker accepted the connection.
var ErrPacketTooLarge = errors.New("thethings: mqtt packet too large")

const (
	// DefaultMaxPacketSize bounds an incoming packet, fixed header included,
	// unless [WithMaxPacketSize] says otherwise: 1 MiB, as the platform's
	// REST API bounds a request body.
	DefaultMaxPacketSize = 1 << 20
	minPacketSize        = 1 << 10
	maxPacketSize        = 5 + 268_435_455 // the protocol's largest packet
	readBuffer           = 4 << 10
)

// guardedConn is a network connection whose reads go through an MQTT
// fixed-header parser: the read that would hand over the remaining-length
// byte making a packet larger than max fails instead, so the MQTT client,
// which allocates a packet's body as soon as it has read its header, never
// sees the header. Reads are buffered, which also saves the client's
// one-byte reads of every header a system call each.
type guardedConn struct {
	net.Conn
	r   *bufio.Reader
	max int

	// The parser's state: only the client's reading goroutine reads.
	inLength bool // reading the remaining-length varint
	header   int  // bytes of the fixed header read so far
	length   int  // remaining length decoded so far
	body     int  // body bytes of the current packet still to pass

	mu  sync.Mutex
	err error // why reads fail, once they do
}

func guard(nc net.Conn, max int) *guardedConn {
	return &guardedConn{Conn: nc, r: bufio.NewReaderSize(nc, readBuffer), max: max}
}

// Read reads from the connection and passes on the bytes up to the first
// one that breaks the limit.
func (g *guardedConn) Read(p []byte) (int, error) {
	if err := g.tripped(); err != nil {
		return 0, err
	}
	n, err := g.r.Read(p)
	if i, bad := g.scan(p[:n]); bad != nil {
		g.mu.Lock()
		g.err = bad
		g.mu.Unlock()
		return i, bad
	}
	return n, err
}

// scan runs the parser over p; on a header that breaks the limit it
// returns the index of the offending byte and the error.
func (g *guardedConn) scan(p []byte) (int, error) {
	for i := 0; i < len(p); {
		switch {
		case g.body > 0:
			k := min(g.body, len(p)-i)
			g.body -= k
			i += k
		case !g.inLength: // the packet type byte
			g.inLength, g.header, g.length = true, 1, 0
			i++
		default:
			b := p[i]
			g.length |= int(b&0x7f) << (7 * (g.header - 1))
			g.header++
			if size := g.header + g.length; size > g.max {
				return i, wire.Errorf("thethings: the broker sent a packet header declaring %d bytes or more, over the limit of %d (WithMaxPacketSize): %w",
					size, g.max, ErrPacketTooLarge)
			}
			if b&0x80 != 0 && g.header == 5 {
				return i, errors.New("thethings: the broker sent a packet length of more than 4 bytes: malformed packet")
			}
			if b&0x80 == 0 {
				g.inLength, g.body = false, g.length
			}
			i++
		}
	}
	return len(p), nil
}

// tripped is the error that stopped the reads, or nil.
func (g *guardedConn) tripped() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}
