package thethingstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFaultEvery503And429(t *testing.T) {
	e := start(t, WithThingTokens("tok"), WithFaults(Faults{Every503: 2, Every429: 3}))
	s := e.subscribe("tok", "?keepAlive=10000") // streams are not counted
	s.mustChunk(5 * time.Second)
	want := []int{201, 503, 429, 503, 201, 503, 201, 503, 429}
	for i, status := range want {
		r := e.post("things/tok", fmt.Sprintf(`{"values":[{"key":"k","value":%d}]}`, i))
		require.Equal(t, status, r.status, "request %d", i+1)
		if status == 201 {
			continue
		}
		assert.Equal(t, "1", r.header.Get("Retry-After"))
		assert.Equal(t, "application/json", r.header.Get("Content-Type"))
		var eb errorBody
		require.NoError(t, json.Unmarshal(r.body, &eb))
		assert.Equal(t, "error", eb.Status)
		assert.Equal(t, status, eb.Code)
		if status == 429 {
			assert.Equal(t, "Too Many Requests", eb.Message)
		}
	}
	assert.Equal(t, 3, e.srv.StoredCount("tok", "k"), "nothing stored on 503/429")
	// Every non-stream route shares the counter.
	assert.Equal(t, 503, e.get("things/tok/resources/k").status) // 10th
	assert.Equal(t, 200, e.get("things/tok/resources/k").status) // 11th
	assert.Equal(t, 503, e.get("nope").status)                   // 12th
	assert.Equal(t, 201, e.post("things/tok", `{"values":[{"key":"k","value":1}]}`).status)
	assert.Equal(t, 503, e.get("").status) // 14th

	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{0, "1"}, {100 * time.Millisecond, "1"}, {1500 * time.Millisecond, "2"}, {3 * time.Second, "3"}} {
		e.srv.SetFaults(Faults{Every429: 1, RetryAfter: tc.d})
		r := e.get("utils/date")
		assert.Equal(t, 429, r.status)
		assert.Equal(t, tc.want, r.header.Get("Retry-After"), tc.d)
	}
	e.srv.SetFaults(Faults{})
	assert.Equal(t, Faults{}, e.srv.Faults())
	assert.Equal(t, 200, e.get("utils/date").status)
}

func TestFaultDropEvery(t *testing.T) {
	for _, stores := range []bool{false, true} {
		t.Run(fmt.Sprintf("DropStores=%v", stores), func(t *testing.T) {
			e := start(t, WithThingTokens("tok"), WithFaults(Faults{DropEvery: 2, DropStores: stores}))
			sub := e.subscribe("tok", "?keepAlive=10000")
			sub.mustChunk(5 * time.Second)
			e.mustWrite("tok", `{"values":[{"key":"k","value":1}]}`)
			sub.data(5 * time.Second)
			_, err := e.try("POST", "things/tok", `{"values":[{"key":"k","value":2}]}`, "Content-Type", "application/json")
			require.Error(t, err, "dropped: no response")
			assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset"), err.Error())
			e.mustWrite("tok", `{"values":[{"key":"k","value":3}]}`)
			want := 2
			if stores {
				want = 3
				assert.Equal(t, `[{"key":"k","value":2`, sub.data(5 * time.Second)[:21], "the dropped write was broadcast")
			}
			assert.Equal(t, want, e.srv.StoredCount("tok", "k"))
			assert.Equal(t, `[{"key":"k","value":3`, sub.data(5 * time.Second)[:21])
			assert.Equal(t, 3, e.srv.Requests(RouteWrite))
		})
	}
}

func TestFaultLatency(t *testing.T) {
	const lat = 120 * time.Millisecond
	e := start(t, WithThingTokens("tok"), WithFaults(Faults{Latency: lat}))
	t0 := time.Now()
	assert.Equal(t, 401, e.get("").status)
	assert.GreaterOrEqual(t, time.Since(t0), lat)
	t0 = time.Now()
	s := e.subscribe("tok", "?keepAlive=10000")
	s.mustChunk(5 * time.Second)
	assert.GreaterOrEqual(t, time.Since(t0), lat, "before the first frame")
	e.srv.SetFaults(Faults{})
	t0 = time.Now()
	e.get("")
	assert.Less(t, time.Since(t0), lat)
}

func TestFaultStreamCutAfter(t *testing.T) {
	const cut = 150 * time.Millisecond
	e := start(t, WithThingTokens("tok"), WithFaults(Faults{StreamCutAfter: cut}))
	t0 := time.Now()
	s := e.subscribe("tok", "?keepAlive=40")
	assert.JSONEq(t, `{"status":"success","message":"subscribed"}`, s.mustChunk(5*time.Second))
	var err error
	keepAlives := 0
	for err == nil {
		var c []byte
		c, err = s.chunk(5 * time.Second)
		if err == nil {
			assert.Equal(t, "{}", string(c))
			keepAlives++
		}
	}
	assert.GreaterOrEqual(t, time.Since(t0), cut)
	assert.GreaterOrEqual(t, keepAlives, 1, "the stream was alive before the cut")
	assert.NotErrorIs(t, err, errCleanEnd, "abrupt: no final chunk")
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF), err.Error())
	waitFor(t, "subscription closed", func() bool { return e.srv.OpenSubscriptions() == 0 })
}

func TestFaultStopKeepAlives(t *testing.T) {
	e := start(t, WithThingTokens("tok"), WithFaults(Faults{StopKeepAlives: true}))
	s := e.subscribe("tok", "?keepAlive=50")
	s.mustChunk(5 * time.Second)
	_, err := s.chunk(150 * time.Millisecond) // 3 keep-alive intervals
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout(), "no {} arrives, socket stays open")
	assert.Equal(t, 1, e.srv.OpenSubscriptions())
	e.mustWrite("tok", `{"values":[{"key":"k","value":1}]}`)
	assert.True(t, strings.HasPrefix(s.mustChunk(5*time.Second), `[{"key":"k"`), "data still flows")
	e.srv.SetFaults(Faults{})
	assert.Equal(t, "{}", s.mustChunk(2*time.Second), "keep-alives resume on the open stream")
}

func TestFaultSplitFrames(t *testing.T) {
	e := start(t, WithThingTokens("tok"), WithFaults(Faults{SplitFrames: true}))
	s := e.subscribe("tok", "?keepAlive=10000")
	readFrame := func(n int) string {
		var sb strings.Builder
		for i := 0; i < n; i++ {
			c := s.mustChunk(5 * time.Second)
			require.Len(t, c, 1, "one byte per chunk")
			sb.WriteString(c)
		}
		return sb.String()
	}
	assert.Equal(t, string(frameSubscribed), readFrame(len(frameSubscribed)))
	e.mustWrite("tok", `{"values":[{"key":"k","value":1,"datetime":"20200101000000"}]}`)
	want := `[{"key":"k","value":1,"datetime":"2020-01-01T00:00:00.000Z"}]`
	assert.Equal(t, want, readFrame(len(want)))
}

func TestFaultCoalesceFrames(t *testing.T) {
	const n = 20
	frame := func(i int) []byte { return []byte(fmt.Sprintf(`[{"key":"k","value":%d}]`, i)) }
	for _, coalesce := range []bool{false, true} {
		t.Run(fmt.Sprintf("CoalesceFrames=%v", coalesce), func(t *testing.T) {
			e := start(t, WithThingTokens("tok"), WithFaults(Faults{CoalesceFrames: coalesce}))
			s := e.subscribe("tok", "?keepAlive=10000")
			assert.Equal(t, string(frameSubscribed), s.mustChunk(5*time.Second), "flushed within the interval")
			th := e.srv.thing("tok")
			for i := 0; i < n; i++ {
				th.broadcast(frame(i))
			}
			var all strings.Builder
			var chunks []string
			for all.Len() < n*len(frame(0))+n/2 { // values 10..19 are one byte longer
				c := s.mustChunk(5 * time.Second)
				chunks = append(chunks, c)
				all.WriteString(c)
			}
			dec := json.NewDecoder(strings.NewReader(all.String()))
			for i := 0; i < n; i++ {
				var got json.RawMessage
				require.NoError(t, dec.Decode(&got))
				assert.Equal(t, string(frame(i)), string(got))
			}
			if coalesce {
				assert.LessOrEqual(t, len(chunks), 4, "frames flushed together")
				assert.Greater(t, len(chunks), 1, "at most 16 frames per flush")
			} else {
				assert.Len(t, chunks, n, "one chunk per frame")
			}
		})
	}
}

func TestFaultDropBeforeBody(t *testing.T) {
	e := start(t, WithThingTokens("tok"))
	e.mustWrite("tok", `{"values":[{"key":"k","value":1}]}`)
	e.srv.SetFaults(Faults{DropBeforeBodyEvery: 1})
	_, err := e.try("POST", "things/tok", `{"values":[{"key":"k","value":2}]}`, "Content-Type", "application/json")
	require.Error(t, err, "dropped: no response")
	_, err = e.try("GET", "things/tok/resources/k", "")
	require.Error(t, err, "reads are dropped too")
	e.srv.SetFaults(Faults{})
	e.mustWrite("tok", `{"values":[{"key":"k","value":3}]}`)
	assert.Equal(t, 2, e.srv.StoredCount("tok", "k"), "the dropped write was not stored")
	assert.Equal(t, 0, e.srv.Duplicates())
}
