package thethingstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings/internal/testkit"
)

func TestFaultEvery503And429(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"), WithFaults(Faults{Every503: 2, Every429: 3}))
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
			e := setup(t, nil, WithThingTokens("tok"), WithFaults(Faults{DropEvery: 2, DropStores: stores}))
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
	e := setup(t, nil, WithThingTokens("tok"), WithFaults(Faults{Latency: lat}))
	t0 := time.Now()
	assert.Equal(t, 401, e.get("").status)
	assert.GreaterOrEqual(t, time.Since(t0), lat)
	t0 = time.Now()
	s := e.subscribe("tok", "?keepAlive=10000")
	s.mustChunk(5 * time.Second)
	assert.GreaterOrEqual(t, time.Since(t0), lat, "before the first frame")
	// Cleared, a latency no longer applies: an hour's would outlast the
	// client's timeout. (Comparing a fast answer's time with 120ms would
	// fail whenever a loaded machine paused the test that long.)
	e.srv.SetFaults(Faults{Latency: time.Hour})
	e.srv.SetFaults(Faults{})
	assert.Equal(t, 401, e.get("").status)
}

func TestFaultStreamCutAfter(t *testing.T) {
	const cut = 150 * time.Millisecond
	e := setup(t, nil, WithThingTokens("tok"), WithFaults(Faults{StreamCutAfter: cut}))
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
	require.True(t, testkit.Eventually(t, "subscription closed", func() bool { return e.srv.OpenSubscriptions() == 0 }))
}

func TestFaultStopKeepAlives(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"), WithFaults(Faults{StopKeepAlives: true}))
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
	e := setup(t, nil, WithThingTokens("tok"), WithFaults(Faults{SplitFrames: true}))
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

// On synctest's clock, so that how fast the frames are sent cannot change
// how they are flushed.
func TestFaultCoalesceFrames(t *testing.T) {
	const n = 20
	frame := func(i int) []byte { return []byte(fmt.Sprintf(`[{"key":"k","value":%d}]`, i)) }
	for _, coalesce := range []bool{false, true} {
		t.Run(fmt.Sprintf("CoalesceFrames=%v", coalesce), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := setup(t, &pipeListener{}, WithThingTokens("tok"), WithFaults(Faults{CoalesceFrames: coalesce}))
				s := e.subscribe("tok", "?keepAlive=10000")
				assert.Equal(t, string(frameSubscribed), s.mustChunk(5*time.Second), "flushed within the interval")
				th := e.srv.thing("tok")
				sent := time.Now()
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
					assert.Len(t, chunks, 2, "16 frames at once, the other 4 at the interval")
					assert.Equal(t, coalesceInterval, time.Since(sent), "the last chunk one interval after the frames")
				} else {
					assert.Len(t, chunks, n, "one chunk per frame")
					assert.Zero(t, time.Since(sent), "each frame at once")
				}
				s.conn.Close()
			})
		})
	}
}

func TestFaultDropBeforeBody(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"))
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

func TestFaultNoRetryAfter(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"), WithFaults(Faults{Every503: 1, NoRetryAfter: true}))
	r := e.post("things/tok", `{"values":[{"key":"k","value":1}]}`)
	assert.Equal(t, 503, r.status)
	assert.NotContains(t, r.header, "Retry-After")
	assert.Equal(t, "application/json", r.header.Get("Content-Type"))
	assert.Equal(t, 0, e.srv.StoredCount("tok", "k"))
	e.srv.SetFaults(Faults{Every429: 1, NoRetryAfter: true})
	r = e.get("utils/date")
	assert.Equal(t, 429, r.status)
	assert.NotContains(t, r.header, "Retry-After")
	e.srv.SetFaults(Faults{Every503: 1})
	assert.Equal(t, "1", e.get("utils/date").header.Get("Retry-After"), "with Retry-After by default")
}

func TestFaultStoreThenFail(t *testing.T) {
	for _, tc := range []struct {
		status, want int
		retryAfter   time.Duration
		header       string
		html         bool
	}{
		{0, 502, 0, "", true},
		{500, 500, 0, "", false},
		{502, 502, 2 * time.Second, "2", true},
		{503, 503, 0, "", true},
		{503, 503, 1500 * time.Millisecond, "2", true},
		{504, 504, 0, "", true},
	} {
		t.Run(fmt.Sprintf("%d,%v", tc.status, tc.retryAfter), func(t *testing.T) {
			e := setup(t, nil, WithThingTokens("tok"))
			sub := e.subscribe("tok", "?keepAlive=10000")
			sub.mustChunk(5 * time.Second)
			// Switched on at run time, counted from the first write.
			e.srv.SetFaults(Faults{StoreThenFailEvery: 2, StoreThenFailStatus: tc.status, StoreThenFailRetryAfter: tc.retryAfter})
			for i := 1; i <= 4; i++ {
				r := e.post("things/tok", fmt.Sprintf(`{"values":[{"key":"k","value":%d}]}`, i))
				assert.Equal(t, fmt.Sprintf(`[{"key":"k","value":%d`, i), sub.data(5 * time.Second)[:21], "every write is broadcast")
				if i%2 == 1 {
					assert.Equal(t, 201, r.status, "write %d", i)
					continue
				}
				require.Equal(t, tc.want, r.status, "write %d", i)
				if tc.header == "" {
					assert.NotContains(t, r.header, "Retry-After")
				} else {
					assert.Equal(t, tc.header, r.header.Get("Retry-After"))
				}
				if tc.html {
					assert.Equal(t, "text/html", r.header.Get("Content-Type"))
					assert.Contains(t, string(r.body), fmt.Sprintf("<title>%d %s</title>", tc.want, http.StatusText(tc.want)))
				} else {
					assert.JSONEq(t, `{"status":"error","code":500,"message":"Internal Server Error"}`, string(r.body))
				}
			}
			assert.Equal(t, 4, e.srv.StoredCount("tok", "k"), "failed writes are stored")
			assert.Zero(t, e.srv.Duplicates())
			e.srv.SetFaults(Faults{})
			assert.Equal(t, 201, e.post("things/tok", `{"values":[{"key":"k","value":5}]}`).status)
		})
	}
}

// DropEvery and StoreThenFailEvery count the same writes; a drop wins.
func TestFaultDropAndStoreThenFailOrder(t *testing.T) {
	e := setup(t, nil, WithThingTokens("tok"), WithFaults(Faults{DropEvery: 2, DropStores: true, StoreThenFailEvery: 3, Every503: 5}))
	var got []int
	for i := 1; i <= 10; i++ {
		r, err := e.try("POST", "things/tok", fmt.Sprintf(`{"values":[{"key":"k","value":%d}]}`, i), "Content-Type", "application/json")
		if err != nil {
			got = append(got, 0) // dropped
			continue
		}
		got = append(got, r.status)
	}
	// Requests 5 and 10 get 503 before counting as writes; the other eight
	// are writes 1..8: 2, 4, 6, 8 dropped, 3 failed (6 is dropped).
	assert.Equal(t, []int{201, 0, 502, 0, 503, 201, 0, 201, 0, 503}, got)
	assert.Equal(t, 8, e.srv.StoredCount("tok", "k"))
}

func TestFaultsValidate(t *testing.T) {
	assert.NoError(t, Faults{StoreThenFailStatus: 504, StoreThenFailEvery: 1}.Validate())
	for _, f := range []Faults{
		{StoreThenFailStatus: 501}, {StoreThenFailStatus: 200}, {StoreThenFailEvery: -1},
		{StoreThenFailRetryAfter: -time.Second}, {DropEvery: -1}, {RetryAfter: -1},
	} {
		assert.Error(t, f.Validate(), "%+v", f)
	}
	// SetFaults does what is nearest.
	e := setup(t, nil, WithThingTokens("tok"))
	e.srv.SetFaults(Faults{StoreThenFailEvery: 1, StoreThenFailStatus: 418, Every503: -1})
	assert.Equal(t, 502, e.post("things/tok", `{"values":[{"key":"k","value":1}]}`).status)
}
