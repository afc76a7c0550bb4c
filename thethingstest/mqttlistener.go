package thethingstest

import (
	"log/slog"
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// tcpListener is the broker's TCP listener. The broker's own starts each
// accepted connection's goroutine unsynchronised with its Close, which then
// may begin waiting for the connections before that goroutine has counted
// itself in: a data race, and a Close that returns with a connection still
// being set up. This one counts each connection in before its goroutine
// starts and refuses connections once closing; its Close closes every
// connection itself and waits for each one to end.
//
// It never calls the broker's close callback: that lists the listener's
// clients under a read lock which it takes a second time inside, so a
// client detaching at that moment (its write lock queued between the two)
// deadlocks the broker's Close. Closing the connections ends each client's
// read loop, which detaches it as a shutdown would, Last Will included.
type tcpListener struct {
	id, addr string
	ln       net.Listener

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newTCPListener(id, addr string) *tcpListener {
	return &tcpListener{id: id, addr: addr, conns: map[net.Conn]struct{}{}}
}

func (l *tcpListener) ID() string       { return l.id }
func (l *tcpListener) Protocol() string { return "tcp" }

func (l *tcpListener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

func (l *tcpListener) Init(*slog.Logger) error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return err
	}
	l.ln = ln
	return nil
}

func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = c.Close()
			return
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			_ = establish(l.id, c)
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
		}()
	}
}

func (l *tcpListener) Close(listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	if l.ln != nil {
		_ = l.ln.Close()
	}
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
