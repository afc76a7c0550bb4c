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

// oneSegment is the largest write checked to arrive in one read: a write
// that fits in one packet of any network. TCP keeps no write boundaries, and
// a larger write can arrive in several reads (under load, a 62 KB chunk did
// on loopback); what the Server controls, one write per answer and per
// frame, is checked on the writes themselves (recordingListener).
const oneSegment = 1400

// readWhole reads from conn until complete holds for what arrived, as a
// client that parses each network read alone would wish it did, and
// requires one read when it fits in one segment.
func readWhole(t *testing.T, conn net.Conn, complete func([]byte) bool) []byte {
	t.Helper()
	buf := make([]byte, 1<<20)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	var b []byte
	reads := 0
	for reads == 0 || !complete(b) {
		n, err := conn.Read(buf)
		require.NoError(t, err, "after %d bytes: %q", len(b), b[:min(len(b), 200)])
		b = append(b, buf[:n]...)
		reads++
	}
	if len(b) <= oneSegment {
		require.Equal(t, 1, reads, "%d bytes arrived in one read", len(b))
	}
	return b
}

// answerComplete reports whether b holds a whole HTTP answer (by
// Content-Length).
func answerComplete(b []byte) bool {
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		return false
	}
	for _, line := range strings.Split(string(head), "\r\n") {
		if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length: "); ok {
			n, err := strconv.Atoi(v)
			return err != nil || len(body) >= n
		}
	}
	return true
}

// chunkComplete reports whether b holds a whole HTTP chunk.
func chunkComplete(b []byte) bool {
	line, rest, ok := bytes.Cut(b, []byte("\r\n"))
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(string(line), 16, 64)
	return err != nil || int64(len(rest)) >= n+2
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
	require.Equal(t, n, len(body), "the whole answer, and nothing more")
	return head, body
}

// Each answer leaves in one write, headers and body together, so a client
// that treats each network read as one JSON document (as the official
// JavaScript SDK does) reads even a 1000-value page when the network keeps
// it whole, as it keeps a small answer whole.
func TestAnswerArrivesInOneRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rec := &recordingListener{Listener: ln}
	e := serve(t, rec, WithThingTokens("tok"))
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = Record{Value: json.RawMessage(strconv.Itoa(100 + i%900)), Datetime: base.Add(time.Duration(i) * time.Second)}
	}
	require.NoError(t, e.srv.Seed("tok", "k", recs...))

	conn, err := net.Dial("tcp", e.addr)
	require.NoError(t, err)
	defer conn.Close()
	// oneWrite requires that the answer just read left in one write.
	oneWrite := func(answer []byte) {
		t.Helper()
		writes := rec.taken()
		require.Len(t, writes, 1, "one write for a %d-byte answer", len(answer))
		require.Equal(t, answer, writes[0])
	}
	for i := range 20 { // keep-alive: every answer on the connection
		_, err := fmt.Fprintf(conn, "GET /v2/things/tok/resources/k?limit=1000 HTTP/1.1\r\nHost: %s\r\n\r\n", e.addr)
		require.NoError(t, err)
		answer := readWhole(t, conn, answerComplete)
		oneWrite(answer)
		head, body := splitAnswer(t, answer)
		require.True(t, strings.HasPrefix(head, "HTTP/1.1 200 "), head)
		var items []item
		require.NoError(t, json.Unmarshal(body, &items), "answer %d", i)
		require.Len(t, items, 1000)
		assert.Greater(t, len(body), 50_000)

		// A write answer and an error answer too.
		w := `{"values":[{"key":"w","value":1}]}`
		_, err = fmt.Fprintf(conn, "POST /v2/things/tok HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", e.addr, len(w), w)
		require.NoError(t, err)
		answer = readWhole(t, conn, answerComplete)
		oneWrite(answer)
		_, body = splitAnswer(t, answer)
		assert.JSONEq(t, `{"status":"created"}`, string(body))
		_, err = fmt.Fprintf(conn, "GET /v2/things/nope/resources/k HTTP/1.1\r\nHost: %s\r\n\r\n", e.addr)
		require.NoError(t, err)
		answer = readWhole(t, conn, answerComplete)
		oneWrite(answer)
		head, _ = splitAnswer(t, answer)
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
	require.Equal(t, int(n)+2, len(rest), "exactly one whole chunk")
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

// Each stream frame is one HTTP chunk written at once, whatever its size.
// What the server writes is checked, as TCP keeps no write boundaries: a
// large frame may arrive in several reads, and a fast reader cannot tell one
// write from several that arrive together. A frame that fits in one segment
// arrives in one read.
func TestStreamFrameIsOneChunkInOneRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rec := &recordingListener{Listener: ln}
	e := serve(t, rec, WithThingTokens("tok"))

	conn, err := net.Dial("tcp", e.addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /v2/things/tok?keepAlive=600000 HTTP/1.1\r\nHost: %s\r\n\r\n", e.addr)
	require.NoError(t, err)
	complete := func(b []byte) bool {
		_, rest, ok := bytes.Cut(b, []byte("\r\n\r\n"))
		return ok && chunkComplete(rest)
	}
	first := readWhole(t, conn, complete)
	require.LessOrEqual(t, len(first), oneSegment, "head and first frame fit in one segment, so arrived in one read")
	i := bytes.Index(first, []byte("\r\n\r\n"))
	require.GreaterOrEqual(t, i, 0)
	assert.Contains(t, string(first[:i]), "Transfer-Encoding: chunked")
	assert.Equal(t, `{"status":"success","message":"subscribed"}`, string(parseChunk(t, first[i+4:])))
	require.Equal(t, [][]byte{first}, rec.taken(), "head and first frame in one write")

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
		chunk := readWhole(t, conn, chunkComplete)
		frame := parseChunk(t, chunk)
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
		assert.Equal(t, chunk, frameWrite, "the frame left in one write")
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
