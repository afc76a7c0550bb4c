package thethingstest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/thethings-go/thethings/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a started emulator plus a client that is cleaned up with it.
type env struct {
	t      testing.TB
	srv    *Server
	base   string // ".../v2/"
	addr   string // host:port
	client *http.Client
	pipe   *pipeListener // when set, subscriptions connect through it
}

// setup is the test setup: a server made with opts, serving ln (nil: a
// loopback port of its own, as Start does), and a client of it, all
// closed when the test ends. On a pipeListener, made inside a synctest
// bubble, subscriptions connect through it.
func setup(t testing.TB, ln net.Listener, opts ...Option) *env {
	t.Helper()
	s, err := New(opts...)
	require.NoError(t, err)
	if ln == nil {
		require.NoError(t, s.Start())
		t.Cleanup(func() { assert.NoError(t, s.Close()) })
	} else {
		served := make(chan error, 1)
		go func() { served <- s.Serve(ln) }()
		t.Cleanup(func() {
			assert.NoError(t, s.Close())
			assert.NoError(t, <-served, "Serve returns nil after Close")
		})
		require.True(t, testkit.Eventually(t, "the server serves", func() bool { return s.URL() != "" }))
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	e := &env{t: t, srv: s, base: s.URL(), client: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
	e.addr = strings.TrimSuffix(strings.TrimPrefix(e.base, "http://"), "/v2/")
	e.pipe, _ = ln.(*pipeListener)
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; path is relative to the base URL ("things/tok").
func (e *env) do(method, path, body string, header ...string) response {
	e.t.Helper()
	r, err := e.try(method, path, body, header...)
	require.NoError(e.t, err)
	return r
}

func (e *env) try(method, path, body string, header ...string) (response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	u := e.base + path
	if strings.HasPrefix(path, "/") { // from the root, not under /v2/
		u = "http://" + e.addr + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}, err
}

func (e *env) get(path string) response { e.t.Helper(); return e.do("GET", path, "") }

// post sends JSON like the documentation's curl commands.
func (e *env) post(path, body string) response {
	e.t.Helper()
	return e.do("POST", path, body, "Content-Type", "application/json", "Accept", "application/json")
}

// mustWrite writes and requires 201.
func (e *env) mustWrite(token, body string) {
	e.t.Helper()
	r := e.post("things/"+token, body)
	require.Equal(e.t, http.StatusCreated, r.status, string(r.body))
}

// readItems reads a resource and decodes the array.
func (e *env) readItems(token, key, query string) []item {
	e.t.Helper()
	r := e.get("things/" + token + "/resources/" + key + query)
	require.Equal(e.t, http.StatusOK, r.status, string(r.body))
	var items []item
	require.NoError(e.t, json.Unmarshal(r.body, &items))
	return items
}

type item struct {
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value"`
	Datetime string          `json:"datetime"`
	Geo      *Geo            `json:"geo"`
}

// rawSub is a subscription read at the HTTP chunk level, so tests can see
// how frames map to chunks.
type rawSub struct {
	t      testing.TB
	conn   net.Conn
	br     *bufio.Reader
	status int
	header textproto.MIMEHeader
	body   []byte // non-chunked answers (errors)
}

var errCleanEnd = errors.New("stream ended with the final chunk")

func (e *env) subscribe(token, query string) *rawSub {
	e.t.Helper()
	s, err := e.dialSub(token, query, 4096)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { s.conn.Close() })
	return s
}

// dialSub opens a subscription on a connection of its own, read through
// a buffer of bufSize bytes.
func (e *env) dialSub(token, query string, bufSize int) (*rawSub, error) {
	var conn net.Conn
	if e.pipe != nil {
		conn = e.pipe.dial()
	} else {
		var err error
		if conn, err = net.DialTimeout("tcp", e.addr, 5*time.Second); err != nil {
			return nil, err
		}
	}
	s := &rawSub{t: e.t, conn: conn, br: bufio.NewReaderSize(conn, bufSize)}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := fmt.Fprintf(conn, "GET /v2/things/%s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n\r\n", token, query, e.addr)
	if err != nil {
		conn.Close()
		return nil, err
	}
	tp := textproto.NewReader(s.br)
	line, err := tp.ReadLine()
	if err != nil {
		conn.Close()
		return nil, err
	}
	parts := strings.SplitN(line, " ", 3)
	if len(parts) < 2 {
		conn.Close()
		return nil, fmt.Errorf("bad status line %q", line)
	}
	s.status, _ = strconv.Atoi(parts[1])
	s.header, err = tp.ReadMIMEHeader()
	if err != nil {
		conn.Close()
		return nil, err
	}
	if cl := s.header.Get("Content-Length"); cl != "" {
		n, _ := strconv.Atoi(cl)
		s.body = make([]byte, n)
		_, err = io.ReadFull(s.br, s.body)
	}
	_ = conn.SetDeadline(time.Time{})
	return s, err
}

// chunk reads one HTTP chunk within d.
func (s *rawSub) chunk(d time.Duration) ([]byte, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(d))
	line, err := s.br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
	if err != nil {
		return nil, fmt.Errorf("bad chunk size line %q", line)
	}
	if n == 0 {
		return nil, errCleanEnd
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(s.br, b); err != nil {
		return nil, err
	}
	return b[:n], nil
}

// mustChunk reads one chunk and fails the test on error.
func (s *rawSub) mustChunk(d time.Duration) string {
	s.t.Helper()
	c, err := s.chunk(d)
	require.NoError(s.t, err)
	return string(c)
}

// data returns the next chunk that is not a keep-alive.
func (s *rawSub) data(d time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := s.chunk(time.Until(deadline))
		require.NoError(s.t, err)
		if string(c) != "{}" {
			return string(c)
		}
	}
}

// pipeListener serves in-memory connections (net.Pipe), so that a server
// and its clients can run in a synctest bubble, on its fake clock. The zero
// value is ready; create it inside the bubble.
type pipeListener struct {
	once  sync.Once
	conns chan net.Conn
	done  chan struct{}
	close sync.Once
}

func (l *pipeListener) init() {
	l.once.Do(func() { l.conns, l.done = make(chan net.Conn), make(chan struct{}) })
}

func (l *pipeListener) Accept() (net.Conn, error) {
	l.init()
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.init()
	l.close.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// dial connects a new client to the listener's server.
func (l *pipeListener) dial() net.Conn {
	l.init()
	client, server := net.Pipe()
	select {
	case l.conns <- server:
	case <-l.done:
		server.Close()
	}
	return client
}

// clock is a settable clock for WithClock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
