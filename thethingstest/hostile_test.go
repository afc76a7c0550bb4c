package thethingstest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRequestSizeBoundedOnEveryRoute(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"), WithControlAPI(), WithMaxBodyBytes(1000))
	big := `{"values":[{"key":"k","value":"` + strings.Repeat("x", 2000) + `"}]}`
	for _, c := range []struct{ method, path string }{
		{"POST", "things/tok"},
		{"POST", "things"},
		{"PUT", ControlPrefix + "faults"},
	} {
		r := e.do(c.method, c.path, big, "Content-Type", "application/json")
		assert.Equal(t, http.StatusRequestEntityTooLarge, r.status, "%s %s: %s", c.method, c.path, r.body)
	}
	// The request line and headers are bounded too, far below net/http's
	// 1 MiB default.
	long := strings.Repeat("a", 100<<10)
	r := e.do("GET", "things/tok/resources/"+long, "")
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, r.status)
	r = e.do("GET", "things/tok/resources/k", "", "X-Junk", long)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, r.status)
	assert.Equal(t, 0, e.srv.StoredCount("tok", "k"))
}

func TestMQTTPublishBoundedLikeARESTBody(t *testing.T) {
	e := setup(t, nil, WithMQTT(), WithThingTokens("tok"), WithMaxBodyBytes(1000))
	c := dialMQTT(t, e.srv.MQTTURL())
	sub := c.subscribe("v2/things/tok")
	c.publish("v2/things/tok", `{"values":[{"key":"big","value":"`+strings.Repeat("x", 1500)+`"}]}`) // under the packet limit, over the body limit
	c.publish("v2/things/tok", `{"values":[{"key":"small","value":"`+strings.Repeat("x", 900)+`"}]}`)
	assert.Contains(t, sub(), `"key":"small"`, "the larger write went to no one")
	assert.Equal(t, 0, e.srv.StoredCount("tok", "big"))
	assert.Equal(t, 1, e.srv.StoredCount("tok", "small"))
}

func TestMQTTPacketOverTheLimitRefusedBeforeItIsRead(t *testing.T) {
	e := setup(t, nil, WithMQTT(), WithThingTokens("tok")) // the default limit, 1 MiB
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.MQTTURL(), "tcp://"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(20*time.Second)))
	// An MQTT length-prefixed string, and a variable byte integer.
	mqttString := func(s string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
	}
	mqttLength := func(n int) (b []byte) {
		for {
			d := byte(n % 128)
			n /= 128
			if n > 0 {
				d |= 0x80
			}
			b = append(b, d)
			if n == 0 {
				return b
			}
		}
	}

	// CONNECT, MQTT 3.1.1, clean session, keep-alive 60s.
	vh := append(mqttString("MQTT"), 4, 0x02, 0, 60)
	vh = append(vh, mqttString("hostile")...)
	_, err = conn.Write(append(append([]byte{0x10}, mqttLength(len(vh))...), vh...))
	require.NoError(t, err)
	rd := bufio.NewReader(conn)
	connack := make([]byte, 4)
	_, err = io.ReadFull(rd, connack)
	require.NoError(t, err)
	require.Equal(t, []byte{0x20, 2, 0, 0}, connack)

	// A 3 MB PUBLISH (QoS 0) holding a valid write.
	payload := `{"values":[{"key":"big","value":"` + strings.Repeat("x", 3<<20) + `"}]}`
	pk := mqttString("v2/things/tok")
	header := append([]byte{0x30}, mqttLength(len(pk)+len(payload))...)
	_, err = conn.Write(append(header, pk...))
	require.NoError(t, err)
	go func() { _, _ = io.Copy(conn, strings.NewReader(payload)) }() // may fail once refused

	// The broker closes the connection on the header alone.
	_, err = rd.ReadByte()
	require.Error(t, err)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection was not closed: %v", err)
	assert.Equal(t, 0, e.srv.StoredCount("tok", "big"))
}

func TestSettingsPathDepthBounded(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"))
	path := func(n int) string { return "$settings" + strings.Repeat(".a", n) }
	e.mustWrite("tok", `{"values":[{"key":"`+path(maxDepth)+`","value":1}]}`)
	r := e.post("things/tok", `{"values":[{"key":"`+path(maxDepth+1)+`","value":1}]}`)
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.Contains(t, string(r.body), "at most 32 segments")
	// A path as long as the body allows: refused at once, and the
	// answer does not quote it.
	r = e.post("things/tok", `{"values":[{"key":"`+path(1<<19-40)+`","value":1}]}`)
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.Less(t, len(r.body), 200)
	r = e.get("things/tok/resources/" + path(maxDepth+1))
	assert.Equal(t, http.StatusNotFound, r.status)
	items := e.readItems("tok", path(maxDepth), "")
	assert.JSONEq(t, `1`, string(items[0].Value))
}

func TestValueNestingBounded(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"))
	nested := func(n int) string { return strings.Repeat(`{"a":[`, n/2) + `"x"` + strings.Repeat(`]}`, n/2) }
	e.mustWrite("tok", `{"values":[{"key":"k","value":`+nested(maxDepth)+`},{"key":"$settings","value":`+nested(maxDepth)+`}]}`)
	for _, key := range []string{"k", "$settings", "$settings.b"} {
		r := e.post("things/tok", `{"values":[{"key":"`+key+`","value":`+nested(maxDepth+2)+`}]}`)
		assert.Equal(t, http.StatusBadRequest, r.status, key)
		assert.Contains(t, string(r.body), "nested deeper than 32 levels", key)
	}
	// Brackets inside strings do not count.
	e.mustWrite("tok", `{"values":[{"key":"k","value":"`+strings.Repeat("[{", 100)+`"}]}`)
	assert.Equal(t, 2, e.srv.StoredCount("tok", "k"))
}

// TestMemoryBoundedPerRequest sends 1 MiB writes shaped to be expensive to
// store or read back, each followed by five reads, and bounds what the
// process (server and client) allocates: a few times the bytes sent and
// received, not the hundreds of times a decoded tree costs.
func TestMemoryBoundedPerRequest(t *testing.T) {
	const limit = 1 << 20
	wide := func() string {
		var b strings.Builder
		b.WriteString(`{"values":[{"key":"$settings","value":{`)
		for i := 0; b.Len() < limit-100; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"%x":{}`, i)
		}
		b.WriteString(`}}]}`)
		return b.String()
	}()
	cases := []struct {
		name, body, read string
		status           int
	}{
		{"wide settings", wide, "$settings", http.StatusCreated},
		{"settings path on wide settings", `{"values":[{"key":"$settings.a.b","value":[1]}]}`, "$settings.a.b", http.StatusCreated},
		{"deep settings path", `{"values":[{"key":"$settings` + strings.Repeat(".a", limit/2-40) + `","value":1}]}`, "$settings", http.StatusBadRequest},
		{"many values", `{"values":[` + strings.Repeat(`{"key":"k","value":1},`, limit/22-2) + `{"key":"k","value":1}]}`, "k?limit=1000", http.StatusCreated},
	}
	e := setup(t, nil, WithThingTokens("tok"))
	for _, c := range cases {
		require.LessOrEqual(t, len(c.body), limit, c.name)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r := e.post("things/tok", c.body)
		require.Equal(t, c.status, r.status, "%s: %.200s", c.name, r.body)
		for range 5 {
			r := e.get("things/tok/resources/" + c.read)
			require.Equal(t, http.StatusOK, r.status, "%s: %.200s", c.name, r.body)
		}
		runtime.ReadMemStats(&after)
		n := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d MiB allocated", c.name, n>>20)
		assert.Less(t, n, uint64(64<<20), "%s: allocated %d MiB", c.name, n>>20)
	}
}

func TestSettingsDocumentPaths(t *testing.T) {
	doc := []byte(`{"a":{"b":[1,{"c":"}]"}],"q\"":"x"},"a":{"b":2,"s":"a,b"},"e\u0078":{},"n":null}`)
	for _, c := range []struct {
		path []string
		want string
	}{
		{[]string{"a"}, `{"b":2,"s":"a,b"}`}, // the last of duplicates, as a decoder keeps
		{[]string{"a", "b"}, `2`},
		{[]string{"a", "s"}, `"a,b"`},
		{[]string{"ex"}, `{}`}, // an escaped name
		{[]string{"n"}, `null`},
	} {
		got, ok := getPath(doc, c.path)
		if assert.True(t, ok, "%v", c.path) {
			assert.Equal(t, c.want, string(got), "%v", c.path)
		}
	}
	for _, p := range [][]string{{"b"}, {"a", "b", "c"}, {"n", "x"}, {"a", "x"}} {
		_, ok := getPath(doc, p)
		assert.False(t, ok, "%v", p)
	}
	assert.Equal(t, `{"a":{"b":{"c":1}}}`, string(setPath(nil, []string{"a", "b", "c"}, []byte(`1`))))
	assert.Equal(t, `{"x":1,"y":{"z":[2]}}`, string(setPath([]byte(`{"x":1,"y":"old"}`), []string{"y", "z"}, []byte(`[2]`))))
	assert.Equal(t, `{"x":{"k":"v","y":true}}`, string(setPath([]byte(`{"x":{"k":"v"}}`), []string{"x", "y"}, []byte(`true`))))
}

func TestErrorMessagesQuoteInputShort(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"))
	long := strings.Repeat("x", 40<<10)
	for _, r := range []response{
		e.post("things/tok", `{"values":[{"key":"`+long+` y","value":1}]}`),
		e.post("things/tok", `{"values":[{"key":"k","value":1,"datetime":"`+long+`"}]}`),
		e.get("things/tok/resources/k?limit=" + long),
		e.get("things/tok/resources/k?startDate=" + long),
		e.get("utils/date?format=" + long),
	} {
		assert.Equal(t, http.StatusBadRequest, r.status, "%.200s", r.body)
		assert.Less(t, len(r.body), 400, "%.200s", r.body)
	}
}
