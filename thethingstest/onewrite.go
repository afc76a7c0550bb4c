package thethingstest

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// One write per answer
//
// Some clients take each network read as one whole JSON document: the
// official JavaScript SDK does, and gets away with it against the platform
// because a Node server answers with res.end(body), one write. net/http
// writes an answer through a 4 KiB buffer per connection, so an answer over
// 4 KiB (a 100-value page) would leave in several writes and such a client
// would fail on it. So the Server wraps every connection it accepts (Start,
// Serve) in a heldConn, which the handler finds in the request context
// (http.Server.ConnContext). When the handler begins an answer, the
// connection starts holding writes in memory; when the answer is complete
// (the handler returned, or a stream frame was flushed) they leave in one
// Write: headers and body together, and each stream frame as exactly one
// chunk. Between answers the connection writes straight through, so what
// net/http writes on its own (100 Continue before a body is read, the final
// chunk of a stream, errors for malformed requests) is never held back. This
// keeps net/http's parsing, keep-alive and timeouts, which hijacking every
// connection would have to redo. A Handler mounted on another server answers
// as that server writes.

// connKey is the request context key of the *heldConn.
type connKey struct{}

// heldConn is a connection whose writes can be held and sent in one Write.
type heldConn struct {
	net.Conn
	mu   sync.Mutex
	held bool
	buf  []byte
}

func (c *heldConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// CloseWrite half-closes the connection, which net/http does before closing
// a connection whose request body it did not read, so that the client
// still gets the answer.
func (c *heldConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// hold makes writes wait for release.
func (c *heldConn) hold() {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
}

// isHeld reports whether writes are being held.
func (c *heldConn) isHeld() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

// release sends what was held in one Write and writes through again.
func (c *heldConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 64<<10 {
		c.buf = nil // a large page's buffer is not kept per idle connection
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// heldListener wraps each accepted connection in a heldConn.
type heldListener struct{ net.Listener }

func (l heldListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &heldConn{Conn: c}, nil
}

// connContext is the http.Server's ConnContext: it makes the heldConn
// reachable from the handler.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if hc, ok := c.(*heldConn); ok {
		return context.WithValue(ctx, connKey{}, hc)
	}
	return ctx
}

// answerWriter holds the connection's writes from the first byte of an
// answer until it is flushed.
type answerWriter struct {
	http.ResponseWriter
	conn *heldConn
}

func (a *answerWriter) WriteHeader(status int) {
	a.conn.hold()
	a.ResponseWriter.WriteHeader(status)
}

func (a *answerWriter) Write(p []byte) (int, error) {
	a.conn.hold()
	return a.ResponseWriter.Write(p)
}

// FlushError flushes what net/http buffered into the connection, then sends
// it in one write. http.ResponseController.Flush calls it.
func (a *answerWriter) FlushError() error {
	err := http.NewResponseController(a.ResponseWriter).Flush()
	if e := a.conn.release(); err == nil {
		err = e
	}
	return err
}

// Unwrap lets http.ResponseController reach Hijack and deadlines.
func (a *answerWriter) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// oneWrite sends each answer of next in one write when the request came
// through a heldConn.
func oneWrite(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(connKey{}).(*heldConn)
		if c == nil {
			next.ServeHTTP(w, r)
			return
		}
		aw := &answerWriter{ResponseWriter: w, conn: c}
		next.ServeHTTP(aw, r)
		if c.isHeld() {
			_ = aw.FlushError()
		}
	})
}
