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

// Each answer leaves in one write, headers and body together, so a client
// that treats each network read as one JSON document (as the official
// JavaScript SDK does) reads even a 1000-value page when the network keeps
// it whole, as it keeps a small answer whole.
func TestAnswerArrivesInOneRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rec := &recordingListener{Listener: ln}
	e := setup(t, rec, WithThingTokens("tok"))
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = Record{Value: json.RawMessage(strconv.Itoa(100 + i%900)), Datetime: base.Add(time.Duration(i) * time.Second)}
	}
	require.NoError(t, e.srv.Seed("tok", "k", recs...))

	conn, err := net.Dial("tcp", e.addr)
	require.NoError(t, err)
	defer conn.Close()
	// readAnswer reads one HTTP answer, whole by its Content-Length,
	// requires that it left in one write and holds nothing more, and
	// splits it into head and body.
	readAnswer := func() (head string, body []byte) {
		t.Helper()
		cl := ""
		answer := readWhole(t, conn, func(b []byte) bool {
			h, rest, ok := bytes.Cut(b, []byte("\r\n\r\n"))
			if !ok {
				return false
			}
			head, body, cl = string(h), rest, ""
			for _, line := range strings.Split(head, "\r\n") {
				if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length: "); ok {
					cl = v
				}
			}
			n, err := strconv.Atoi(cl)
			return err != nil || len(body) >= n
		})
		writes := rec.taken()
		require.Len(t, writes, 1, "one write for a %d-byte answer", len(answer))
		require.Equal(t, answer, writes[0])
		n, err := strconv.Atoi(cl)
		require.NoError(t, err, "Content-Length in %q", head)
		require.Equal(t, n, len(body), "the whole answer, and nothing more")
		return head, body
	}
	for i := range 20 { // keep-alive: every answer on the connection
		_, err := fmt.Fprintf(conn, "GET /v2/things/tok/resources/k?limit=1000 HTTP/1.1\r\nHost: %s\r\n\r\n", e.addr)
		require.NoError(t, err)
		head, body := readAnswer()
		require.True(t, strings.HasPrefix(head, "HTTP/1.1 200 "), head)
		var items []item
		require.NoError(t, json.Unmarshal(body, &items), "answer %d", i)
		require.Len(t, items, 1000)
		assert.Greater(t, len(body), 50_000)

		// A write answer and an error answer too.
		w := `{"values":[{"key":"w","value":1}]}`
		_, err = fmt.Fprintf(conn, "POST /v2/things/tok HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", e.addr, len(w), w)
		require.NoError(t, err)
		_, body = readAnswer()
		assert.JSONEq(t, `{"status":"created"}`, string(body))
		_, err = fmt.Fprintf(conn, "GET /v2/things/nope/resources/k HTTP/1.1\r\nHost: %s\r\n\r\n", e.addr)
		require.NoError(t, err)
		head, _ = readAnswer()
		assert.True(t, strings.HasPrefix(head, "HTTP/1.1 404 "), head)
	}
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
	e := setup(t, rec, WithThingTokens("tok"))

	conn, err := net.Dial("tcp", e.addr)
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /v2/things/tok?keepAlive=600000 HTTP/1.1\r\nHost: %s\r\n\r\n", e.addr)
	require.NoError(t, err)
	// cutChunk returns the data of the HTTP chunk b begins with, the bytes
	// after it, and whether the chunk is all there; a size line that does
	// not parse counts as all there, for the caller's check to fail on.
	cutChunk := func(b []byte) (data, after []byte, whole bool) {
		line, rest, ok := bytes.Cut(b, []byte("\r\n"))
		if !ok {
			return nil, nil, false
		}
		n, err := strconv.ParseInt(string(line), 16, 64)
		if err != nil || int64(len(rest)) < n+2 {
			return nil, nil, err != nil
		}
		return rest[:n], rest[n:], true
	}
	// parseChunk requires b to be exactly one HTTP chunk and returns its data.
	parseChunk := func(b []byte) []byte {
		t.Helper()
		data, after, whole := cutChunk(b)
		require.True(t, whole && data != nil, "one whole chunk in %q", b[:min(len(b), 100)])
		require.Equal(t, "\r\n", string(after), "exactly one whole chunk")
		return data
	}
	first := readWhole(t, conn, func(b []byte) bool {
		_, rest, ok := bytes.Cut(b, []byte("\r\n\r\n"))
		_, _, whole := cutChunk(rest)
		return ok && whole
	})
	require.LessOrEqual(t, len(first), oneSegment, "head and first frame fit in one segment, so arrived in one read")
	i := bytes.Index(first, []byte("\r\n\r\n"))
	require.GreaterOrEqual(t, i, 0)
	assert.Contains(t, string(first[:i]), "Transfer-Encoding: chunked")
	assert.Equal(t, `{"status":"success","message":"subscribed"}`, string(parseChunk(first[i+4:])))
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
		chunk := readWhole(t, conn, func(b []byte) bool { _, _, whole := cutChunk(b); return whole })
		frame := parseChunk(chunk)
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
	s, err := New(WithThingTokens("tok"))
	require.NoError(b, err)
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
