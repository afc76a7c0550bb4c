package thethingstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readOnce does one Read on conn, as a client that parses each network
// chunk alone does (the official JavaScript SDK).
func readOnce(t *testing.T, conn net.Conn) []byte {
	t.Helper()
	buf := make([]byte, 1<<20)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, err := conn.Read(buf)
	require.NoError(t, err)
	return buf[:n]
}

// splitAnswer splits a whole HTTP answer into its head and body, failing
// when the body is not all there (by Content-Length).
func splitAnswer(t *testing.T, b []byte) (head string, body []byte) {
	t.Helper()
	i := bytes.Index(b, []byte("\r\n\r\n"))
	require.GreaterOrEqual(t, i, 0, "the head is whole: %q", b[:min(len(b), 200)])
	head, body = string(b[:i]), b[i+4:]
	cl := ""
	for _, line := range strings.Split(head, "\r\n") {
		if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length: "); ok {
			cl = v
		}
	}
	n, err := strconv.Atoi(cl)
	require.NoError(t, err, "Content-Length in %q", head)
	require.Equal(t, n, len(body), "the whole answer arrived in one read")
	return head, body
}

// Each answer leaves in one write, headers and body together, so a client
// that treats each network read as one JSON document (as the official
// JavaScript SDK does) reads even a 1000-value page. 1000 values of this
// size keep the answer under the loopback MTU, so it is one TCP segment.
func TestAnswerArrivesInOneRead(t *testing.T) {
	e := start(t, WithThingTokens("tok"))
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = Record{Value: json.RawMessage(strconv.Itoa(100 + i%900)), Datetime: base.Add(time.Duration(i) * time.Second)}
	}
	require.NoError(t, e.srv.Seed("tok", "k", recs...))

	conn, err := net.Dial("tcp", e.addr)
	require.NoError(t, err)
	defer conn.Close()
	for i := range 20 { // keep-alive: every answer on the connection
		_, err := fmt.Fprintf(conn, "GET /v2/things/tok/resources/k?limit=1000 HTTP/1.1\r\nHost: %s\r\n\r\n", e.addr)
		require.NoError(t, err)
		head, body := splitAnswer(t, readOnce(t, conn))
		require.True(t, strings.HasPrefix(head, "HTTP/1.1 200 "), head)
		var items []item
		require.NoError(t, json.Unmarshal(body, &items), "answer %d", i)
		require.Len(t, items, 1000)
		assert.Greater(t, len(body), 50_000)

		// A write answer and an error answer too.
		w := `{"values":[{"key":"w","value":1}]}`
		_, err = fmt.Fprintf(conn, "POST /v2/things/tok HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", e.addr, len(w), w)
		require.NoError(t, err)
		_, body = splitAnswer(t, readOnce(t, conn))
		assert.JSONEq(t, `{"status":"created"}`, string(body))
		_, err = fmt.Fprintf(conn, "GET /v2/things/nope/resources/k HTTP/1.1\r\nHost: %s\r\n\r\n", e.addr)
		require.NoError(t, err)
		head, _ = splitAnswer(t, readOnce(t, conn))
		assert.True(t, strings.HasPrefix(head, "HTTP/1.1 404 "), head)
	}
}

// parseChunk requires b to be exactly one HTTP chunk and returns its data.
func parseChunk(t *testing.T, b []byte) []byte {
	t.Helper()
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	require.True(t, ok, "chunk size line in %q", b[:min(len(b), 100)])
	n, err := strconv.ParseInt(string(line), 16, 64)
	require.NoError(t, err)
	require.Equal(t, int(n)+2, len(rest), "exactly one whole chunk in one read")
	require.Equal(t, "\r\n", string(rest[n:]))
	return rest[:n]
}

// recordingListener records the size of every write on its connections,
// below the Server's own wrapping.
type recordingListener struct {
	net.Listener
	mu     sync.Mutex
	writes [][]byte
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, l: l}, nil
}

func (l *recordingListener) taken() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.writes
	l.writes = nil
	return w
}

type recordingConn struct {
	net.Conn
	l *recordingListener
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.l.mu.Lock()
	c.l.writes = append(c.l.writes, bytes.Clone(p))
	c.l.mu.Unlock()
	return c.Conn.Write(p)
}

// Each stream frame is one HTTP chunk written at once, whatever its size:
// both what the client reads and what the server writes are checked, as a
// fast reader cannot tell one write from several that arrive together.
func TestStreamFrameIsOneChunkInOneRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rec := &recordingListener{Listener: ln}
	s := mustNew(t, WithThingTokens("tok"))
	done := make(chan error, 1)
	go func() { done <- s.Serve(rec) }()
	defer func() {
		require.NoError(t, s.Close())
		require.NoError(t, <-done)
	}()
	waitFor(t, "URL", func() bool { return s.URL() != "" })
	e := &env{t: t, srv: s, base: s.URL(), addr: ln.Addr().String(), client: &http.Client{Transport: &http.Transport{}}}
	defer e.client.CloseIdleConnections()

	conn, err := net.Dial("tcp", e.addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /v2/things/tok?keepAlive=600000 HTTP/1.1\r\nHost: %s\r\n\r\n", e.addr)
	require.NoError(t, err)
	first := readOnce(t, conn)
	i := bytes.Index(first, []byte("\r\n\r\n"))
	require.GreaterOrEqual(t, i, 0)
	assert.Contains(t, string(first[:i]), "Transfer-Encoding: chunked")
	assert.Equal(t, `{"status":"success","message":"subscribed"}`, string(parseChunk(t, first[i+4:])))
	require.Equal(t, 1, len(rec.taken()), "head and first frame in one write")

	for _, n := range []int{1, 10, 100, 1000, 3, 500} {
		var b strings.Builder
		b.WriteString(`{"values":[`)
		for j := range n {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"key":"k","value":%d,"datetime":"2020-01-01T00:00:00Z"}`, 100+j%900)
		}
		b.WriteString(`]}`)
		e.mustWrite("tok", b.String())
		frame := parseChunk(t, readOnce(t, conn))
		var items []item
		require.NoError(t, json.Unmarshal(frame, &items))
		require.Len(t, items, n)
		// The write's own answer and the frame: one write each.
		writes := rec.taken()
		require.Equal(t, 2, len(writes), "%d values: one write for the answer, one for the frame", n)
		frameWrite := writes[0]
		if bytes.HasPrefix(frameWrite, []byte("HTTP/1.1 ")) {
			frameWrite = writes[1]
		}
		assert.Equal(t, frame, parseChunk(t, frameWrite))
	}
}

// BenchmarkReadPageLoopback reads a 1000-value page over loopback, sent in
// one write (Start) and as net/http writes it (Handler mounted on an
// httptest server): the cost of the one write.
func BenchmarkReadPageLoopback(b *testing.B) {
	s := mustNew(b, WithThingTokens("tok"))
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = Record{Value: json.RawMessage(strconv.Itoa(i)), Datetime: base.Add(time.Duration(i) * time.Second)}
	}
	require.NoError(b, s.Seed("tok", "k", recs...))
	require.NoError(b, s.Start())
	defer s.Close()
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for _, bc := range []struct{ name, url string }{
		{"one-write", s.URL()},
		{"net-http", ts.URL + "/v2/"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			u := bc.url + "things/tok/resources/k?limit=1000"
			buf := new(bytes.Buffer)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Get(u)
				if err != nil {
					b.Fatal(err)
				}
				buf.Reset()
				_, err = buf.ReadFrom(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || buf.Len() < 50_000 {
					b.Fatal(err, resp.Status, buf.Len())
				}
			}
		})
	}
}
