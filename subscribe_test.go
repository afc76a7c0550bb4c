package thethings_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/thethingstest"
)

// subPost writes a raw body to the emulator as a device would.
func subPost(t testing.TB, srv *thethingstest.Server, body string) {
	t.Helper()
	resp, err := http.Post(srv.URL()+"things/"+sentinelToken, "application/json", strings.NewReader(body))
	if err != nil {
		t.Errorf("write: %v", err)
		return
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("write answered %d", resp.StatusCode)
	}
}

// stateLog records state reports; it is safe for concurrent use.
type stateLog struct {
	mu     sync.Mutex
	states []thethings.State
	causes []error
	hook   func(n int, s thethings.State, cause error)
}

func (l *stateLog) handler(s thethings.State, cause error) {
	l.mu.Lock()
	l.states = append(l.states, s)
	l.causes = append(l.causes, cause)
	n := len(l.states)
	hook := l.hook
	l.mu.Unlock()
	if hook != nil {
		hook(n, s, cause)
	}
}

func (l *stateLog) snapshot() ([]thethings.State, []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]thethings.State(nil), l.states...), append([]error(nil), l.causes...)
}

func (l *stateLog) count(s thethings.State) int {
	states, _ := l.snapshot()
	n := 0
	for _, x := range states {
		if x == s {
			n++
		}
	}
	return n
}

func TestSubscribeDeliversWrites(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var log stateLog
	log.hook = func(_ int, s thethings.State, _ error) {
		if s == thethings.StateConnected {
			go func() {
				subPost(t, srv, `{"values":[{"key":"temp","value":21.50,"geo":{"lat":41.5,"long":2.25}},{"key":"big","value":12345678901234567890123},{"key":"msg","value":"a ] } \" {"}]}`)
				subPost(t, srv, `{"values":[{"key":"cmd","value":{"valve":"open","pct":[1,2]},"datetime":"20260102030405"}]}`)
			}()
		}
	}
	var got []thethings.Message
	subscribed := time.Now()
	for msg, err := range c.Subscribe(ctx, thethings.WithKeepAlive(time.Second), thethings.WithStateHandler(log.handler)) {
		require.NoError(t, err)
		got = append(got, msg)
		if len(got) == 2 {
			break
		}
	}
	require.Len(t, got, 2)
	first := got[0]
	assert.False(t, first.Backfill)
	require.Len(t, first.Values, 3)
	assert.Equal(t, "temp", first.Values[0].Key)
	assert.Equal(t, json.Number("21.50"), first.Values[0].Value, "numbers keep their exact text")
	assert.Equal(t, &thethings.Geo{Lat: 41.5, Long: 2.25}, first.Values[0].Geo)
	at := first.Values[0].Datetime // stamped by the server when written
	assert.False(t, at.Before(subscribed.Truncate(time.Millisecond)) || at.After(time.Now()), "datetime %v", at)
	assert.Equal(t, json.Number("12345678901234567890123"), first.Values[1].Value)
	assert.Equal(t, `a ] } " {`, first.Values[2].Value)
	second := got[1]
	require.Len(t, second.Values, 1)
	assert.Equal(t, map[string]any{"valve": "open", "pct": []any{json.Number("1"), json.Number("2")}}, second.Values[0].Value)
	assert.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), second.Values[0].Datetime)

	states, _ := log.snapshot()
	assert.Equal(t, []thethings.State{thethings.StateConnected}, states, "break reports no state")
	testkit.Eventually(t, "no subscription left open on the emulator", func() bool { return srv.OpenSubscriptions() == 0 })
	assert.Equal(t, 1, srv.Requests(thethingstest.RouteSubscribe))
}

func TestSubscribeRequest(t *testing.T) {
	t.Parallel()
	var seen atomic.Pointer[http.Request]
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r)
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"status":"success","message":"streaming"}[{"key":"a","value":1}]`)
	}), thethings.WithUserAgent("valve-ctl/2"))
	for msg, err := range c.Subscribe(testkit.Ctx(t, 0), thethings.WithKeepAlive(1500*time.Millisecond)) {
		require.NoError(t, err, "any success message text is a subscription")
		assert.Equal(t, "a", msg.Values[0].Key)
		break
	}
	r := seen.Load()
	require.NotNil(t, r)
	assert.Equal(t, http.MethodGet, r.Method)
	assert.Equal(t, "/v2/things/"+sentinelToken, r.URL.Path)
	assert.Equal(t, "1500", r.URL.Query().Get("keepAlive"))
	assert.Equal(t, "application/json", r.Header.Get("Accept"))
	assert.True(t, strings.HasPrefix(r.Header.Get("User-Agent"), "valve-ctl/2 thethings-go/"))
}

func TestSubscribeInvalidOptions(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	bad := map[string]thethings.SubscribeOption{
		"keepAlive too short":  thethings.WithKeepAlive(999 * time.Millisecond),
		"keepAlive too long":   thethings.WithKeepAlive(2 * time.Hour),
		"keepAlive fractional": thethings.WithKeepAlive(time.Second + time.Microsecond),
		"negative reconnect":   thethings.WithReconnect(-1),
		"no backfill keys":     thethings.WithBackfill(),
		"bad backfill key":     thethings.WithBackfill("ok", "no/slash"),
		"magic backfill key":   thethings.WithBackfill("$geo"),
		"nil handler":          thethings.WithStateHandler(nil),
		"nil option":           nil,
	}
	for name, opt := range bad {
		t.Run(name, func(t *testing.T) {
			n := 0
			for msg, err := range c.Subscribe(testkit.Ctx(t, 0), opt) {
				n++
				assert.Empty(t, msg.Values)
				assert.ErrorIs(t, err, thethings.ErrInvalidOption)
			}
			assert.Equal(t, 1, n, "one error, then the end")
		})
	}
	assert.Zero(t, srv.Requests(thethingstest.RouteSubscribe), "no I/O for invalid options")
}

func TestSubscribeSingleUse(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	var log stateLog
	log.hook = func(_ int, s thethings.State, _ error) {
		if s == thethings.StateConnected {
			cancel()
		}
	}
	seq := c.Subscribe(ctx, thethings.WithStateHandler(log.handler))
	var errs []error
	for _, err := range seq {
		errs = append(errs, err)
	}
	assert.Empty(t, errs, "ctx cancel ends the sequence with no error")
	errs = nil
	for _, err := range seq {
		errs = append(errs, err)
	}
	require.Len(t, errs, 1)
	assert.ErrorContains(t, errs[0], "only once")
	assert.Equal(t, 1, srv.Requests(thethingstest.RouteSubscribe))
	testkit.Eventually(t, "no subscription left open on the emulator", func() bool { return srv.OpenSubscriptions() == 0 })
}

func TestSubscribeNotRetried(t *testing.T) {
	t.Parallel()
	t.Run("unknown token", func(t *testing.T) {
		t.Parallel()
		srv := thethingstest.NewServer(t, thethingstest.WithThingTokens()) // knows no thing
		_, c := setup(t, srv.URL())
		var log stateLog
		var errs []error
		for _, err := range c.Subscribe(testkit.Ctx(t, 0), thethings.WithStateHandler(log.handler)) {
			errs = append(errs, err)
		}
		require.Len(t, errs, 1)
		assert.ErrorIs(t, errs[0], thethings.ErrThingNotFound)
		var ae *thethings.APIError
		require.ErrorAs(t, errs[0], &ae)
		assert.Equal(t, http.StatusNotFound, ae.StatusCode)
		assert.Equal(t, "/v2/things/***", ae.Path)
		assert.NotContains(t, fmt.Sprintf("%v %+v", errs[0], ae), sentinelToken)
		assert.Equal(t, 1, srv.Requests(thethingstest.RouteSubscribe))
	})
	for name, h := range map[string]struct {
		status int
		body   string
		is     error
	}{
		"401":                {401, `{"status":"error","code":401,"message":"Invalid thing token"}`, thethings.ErrUnauthorized},
		"403":                {403, `{"status":"error","message":"Forbidden"}`, thethings.ErrUnauthorized},
		"400":                {400, `{"status":"error","message":"bad keepAlive"}`, nil},
		"501":                {501, `{"status":"error","message":"Not Implemented"}`, nil},
		"error first frame":  {200, `{"status":"error","message":"Thing token doesn't exist"}`, thethings.ErrThingNotFound},
		"error frame + code": {200, `{"status":"error","code":401,"message":"nope ` + sentinelToken + `"}`, thethings.ErrUnauthorized},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				calls.Add(1)
				w.WriteHeader(h.status)
				_, _ = io.WriteString(w, h.body)
			}))
			var errs []error
			for _, err := range c.Subscribe(testkit.Ctx(t, 0)) {
				errs = append(errs, err)
			}
			require.Len(t, errs, 1)
			var ae *thethings.APIError
			require.ErrorAs(t, errs[0], &ae)
			if h.is != nil {
				assert.ErrorIs(t, errs[0], h.is)
			}
			assert.NotContains(t, errs[0].Error(), sentinelToken)
			assert.Equal(t, int32(1), calls.Load())
		})
	}
}

func TestSubscribeCutMidFrame(t *testing.T) {
	t.Parallel()
	// Every subscription gets the subscribed frame and the first part of
	// a data frame, then the connection drops: a stream cut inside a
	// frame. The fourth gets a whole frame.
	const cuts = 3
	var calls atomic.Int32
	var logged bytes.Buffer
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"status":"success","message":"subscribed"}`)
		if n > cuts {
			_, _ = io.WriteString(w, `[{"key":"after","value":`+fmt.Sprint(n)+`}]`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, `[{"key":"lost","value":"half a fr`)
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		_ = conn.Close()
	}), thethings.WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
	var log stateLog
	for msg, err := range c.Subscribe(testkit.Ctx(t, 0), thethings.WithStateHandler(log.handler), thethings.WithReconnect(1)) {
		require.NoError(t, err, "the budget resets on every established connection")
		require.Len(t, msg.Values, 1)
		assert.Equal(t, "after", msg.Values[0].Key, "a half frame is never delivered")
		assert.Equal(t, json.Number("4"), msg.Values[0].Value)
		break
	}
	assert.Equal(t, 3, strings.Count(logged.String(), "subscription reconnecting"), "reconnects are logged")
	assert.Contains(t, logged.String(), "cut inside a frame")
	assert.NotContains(t, logged.String(), sentinelToken)
	states, causes := log.snapshot()
	want := []thethings.State{thethings.StateConnected}
	for range 3 {
		want = append(want, thethings.StateDisconnected, thethings.StateReconnecting, thethings.StateConnected)
	}
	assert.Equal(t, want, states)
	for i, s := range states {
		if s == thethings.StateDisconnected {
			assert.ErrorIs(t, causes[i], io.ErrUnexpectedEOF)
			assert.ErrorContains(t, causes[i], "cut inside a frame")
			assert.NotContains(t, causes[i].Error(), sentinelToken)
		}
	}
}

func TestSubscribeReconnectBudget(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 2} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				calls.Add(1)
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = io.WriteString(w, `{"status":"error","message":"boom"}`)
			}))
			var log stateLog
			var errs []error
			for _, err := range c.Subscribe(testkit.Ctx(t, 0), thethings.WithReconnect(n), thethings.WithStateHandler(log.handler)) {
				errs = append(errs, err)
			}
			require.Len(t, errs, 1)
			var ae *thethings.APIError
			require.ErrorAs(t, errs[0], &ae)
			assert.Equal(t, 500, ae.StatusCode)
			assert.ErrorContains(t, errs[0], fmt.Sprintf("after %d reconnect attempts", n))
			assert.Equal(t, int32(n+1), calls.Load())
			assert.Equal(t, n+1, log.count(thethings.StateDisconnected), "every failure is reported")
			assert.Equal(t, n, log.count(thethings.StateReconnecting))
		})
	}
}

func TestSubscribeEmulatorStreamCut(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{StreamCutAfter: 100 * time.Millisecond}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var log stateLog
	log.hook = func(n int, s thethings.State, _ error) {
		if s == thethings.StateConnected && n > 1 {
			srv.SetFaults(thethingstest.Faults{})
			go subPost(t, srv, `{"values":[{"key":"k","value":"after the cut"}]}`)
		}
	}
	for msg, err := range c.Subscribe(ctx, thethings.WithStateHandler(log.handler)) {
		require.NoError(t, err)
		assert.Equal(t, "after the cut", msg.Values[0].Value)
		break
	}
	states, causes := log.snapshot()
	require.Equal(t, []thethings.State{thethings.StateConnected, thethings.StateDisconnected, thethings.StateReconnecting, thethings.StateConnected}, states)
	assert.Error(t, causes[1])
	assert.Equal(t, 2, srv.Requests(thethingstest.RouteSubscribe))
	testkit.Eventually(t, "no subscription left open on the emulator", func() bool { return srv.OpenSubscriptions() == 0 })
}

func TestSubscribeIdleTimeoutOnEmulator(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{StopKeepAlives: true}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var log stateLog
	var idleAt atomic.Int64
	start := time.Now()
	log.hook = func(_ int, s thethings.State, cause error) {
		switch s {
		case thethings.StateDisconnected:
			idleAt.Store(int64(time.Since(start)))
			srv.SetFaults(thethingstest.Faults{})
		case thethings.StateConnected:
			if srv.Requests(thethingstest.RouteSubscribe) == 2 {
				go subPost(t, srv, `{"values":[{"key":"k","value":1}]}`)
			}
		}
	}
	for msg, err := range c.Subscribe(ctx, thethings.WithKeepAlive(time.Second), thethings.WithStateHandler(log.handler)) {
		require.NoError(t, err)
		assert.Equal(t, json.Number("1"), msg.Values[0].Value)
		break
	}
	states, causes := log.snapshot()
	require.Equal(t, []thethings.State{thethings.StateConnected, thethings.StateDisconnected, thethings.StateReconnecting, thethings.StateConnected}, states)
	assert.ErrorIs(t, causes[1], thethings.ErrIdleTimeout, "the cause is the watchdog, not a read error")
	assert.GreaterOrEqual(t, time.Duration(idleAt.Load()), 3*time.Second, "keepAlive + 2s")
	testkit.Eventually(t, "no subscription left open on the emulator", func() bool { return srv.OpenSubscriptions() == 0 })
}

func TestSubscribeSplitAndCoalescedFrames(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]thethingstest.Faults{
		"split":    {SplitFrames: true},
		"coalesce": {CoalesceFrames: true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, c := setup(t, thethingstest.WithFaults(f))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			const n = 40
			var log stateLog
			log.hook = func(_ int, s thethings.State, _ error) {
				if s == thethings.StateConnected {
					go func() {
						for i := range n {
							subPost(t, srv, fmt.Sprintf(`{"values":[{"key":"seq","value":%d},{"key":"txt","value":"}{][%d"}]}`, i, i))
						}
					}()
				}
			}
			i := 0
			for msg, err := range c.Subscribe(ctx, thethings.WithStateHandler(log.handler)) {
				require.NoError(t, err)
				require.Len(t, msg.Values, 2, "one write, one message")
				assert.Equal(t, json.Number(fmt.Sprint(i)), msg.Values[0].Value)
				assert.Equal(t, fmt.Sprintf("}{][%d", i), msg.Values[1].Value)
				i++
				if i == n {
					break
				}
			}
			assert.Equal(t, n, i)
			assert.Equal(t, 1, log.count(thethings.StateConnected), "no reconnect")
			testkit.Eventually(t, "no subscription left open on the emulator", func() bool { return srv.OpenSubscriptions() == 0 })
		})
	}
}

func TestSubscribeContextCancelClosesAtOnce(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx, cancel := context.WithCancel(testkit.Ctx(t, 0))
	var log stateLog
	log.hook = func(_ int, s thethings.State, _ error) {
		if s == thethings.StateConnected {
			time.AfterFunc(50*time.Millisecond, cancel)
		}
	}
	var errs []error
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for _, err := range c.Subscribe(ctx, thethings.WithStateHandler(log.handler)) {
			errs = append(errs, err)
		}
	}()
	<-ctx.Done()
	if !testkit.Eventually(t, "the loop ends once ctx is cancelled", func() bool {
		select {
		case <-ended:
			return true
		default:
			return false
		}
	}) {
		t.FailNow()
	}
	assert.Empty(t, errs, "the caller's cancel is no error")
	assert.Equal(t, 1, log.count(thethings.StateConnected))
	assert.Zero(t, log.count(thethings.StateReconnecting))
	testkit.Eventually(t, "no subscription left open on the emulator", func() bool { return srv.OpenSubscriptions() == 0 })
}

func TestSubscribeFrameTooLarge(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusOK)
		bw := bufio.NewWriter(w)
		_, _ = bw.WriteString(`{"status":"success","message":"subscribed"}[{"key":"huge","value":"`)
		for range 2 << 10 {
			_, _ = bw.WriteString(strings.Repeat("x", 1024))
		}
		_, _ = bw.WriteString(`"}][{"key":"after","value":1}]`)
		_ = bw.Flush()
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	var errs []error
	var got []thethings.Message
	for msg, err := range c.Subscribe(testkit.Ctx(t, 0), thethings.WithMaxFrameSize(1<<20)) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got = append(got, msg)
		break
	}
	// The frame is skipped and reported; the stream goes on.
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], thethings.ErrFrameTooLarge)
	require.Len(t, got, 1)
	assert.Equal(t, "after", got[0].Values[0].Key)
	assert.Equal(t, int32(1), calls.Load(), "the same connection")
}

func TestSubscribeManySubscriptions(t *testing.T) {
	t.Parallel()
	const n = 500
	streamTr := &http.Transport{MaxIdleConnsPerHost: -1}
	defer streamTr.CloseIdleConnections()
	srv, c := setup(t, thethings.WithStreamHTTPClient(&http.Client{Transport: streamTr}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var connected, received sync.WaitGroup
	connected.Add(n)
	received.Add(n)
	var bad atomic.Int32
	for range n {
		go func() {
			defer received.Done()
			var once sync.Once
			for msg, err := range c.Subscribe(ctx, thethings.WithStateHandler(func(s thethings.State, _ error) {
				if s == thethings.StateConnected {
					once.Do(connected.Done)
				}
			})) {
				if err != nil || len(msg.Values) != 1 || msg.Values[0].Value != "all" {
					bad.Add(1)
				}
				break
			}
		}()
	}
	connected.Wait()
	subPost(t, srv, `{"values":[{"key":"broadcast","value":"all"}]}`)
	received.Wait()
	assert.Zero(t, bad.Load())
	testkit.Eventually(t, "no subscription left open on the emulator", func() bool { return srv.OpenSubscriptions() == 0 })
}

func TestSubscribeErrorsAreRedacted(t *testing.T) {
	t.Parallel()
	// A listener that accepts and closes at once: the network error names
	// no URL, so no token.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.Close()
		}
	}()
	_, c := setup(t, "http://"+ln.Addr().String())
	var log stateLog
	var errs []error
	for _, err := range c.Subscribe(testkit.Ctx(t, 0), thethings.WithReconnect(1), thethings.WithStateHandler(log.handler)) {
		errs = append(errs, err)
	}
	require.Len(t, errs, 1)
	_, causes := log.snapshot()
	for _, e := range append(causes, errs...) {
		if e == nil {
			continue
		}
		assert.NotContains(t, fmt.Sprintf("%v|%+v|%#v", e, e, e), sentinelToken)
		var ue *url.Error
		assert.False(t, errors.As(e, &ue), "no *url.Error: it carries the URL")
	}
	assert.ErrorContains(t, errs[0], "/v2/things/***")
}

func TestSubscribeBackfillAfterCut(t *testing.T) {
	t.Parallel()
	for name, withFields := range map[string]bool{"stream datetimes": true, "bare stream items": false} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, c := setup(t, thethingstest.WithStreamItemFields(withFields),
				thethingstest.WithFaults(thethingstest.Faults{StreamCutAfter: 700 * time.Millisecond}))
			base := time.Now().UTC().Truncate(time.Millisecond)
			gapWrite := func(key string, v any, i int) {
				b, _ := json.Marshal(map[string]any{"values": []map[string]any{{
					"key": key, "value": v, "datetime": base.Add(time.Duration(i) * 10 * time.Millisecond).Format("2006-01-02T15:04:05.000Z"),
				}}})
				subPost(t, srv, string(b))
			}
			var log stateLog
			log.hook = func(n int, s thethings.State, cause error) {
				switch {
				case s == thethings.StateConnected && n == 1:
					subPost(t, srv, `{"values":[{"key":"temp","value":"A"}]}`)
					subPost(t, srv, `{"values":[{"key":"other","value":"not backfilled"}]}`)
					subPost(t, srv, `{"values":[{"key":"temp","value":"B"}]}`)
				case s == thethings.StateDisconnected && n == 2:
					srv.SetFaults(thethingstest.Faults{})
					// Written while the stream is down.
					gapWrite("temp", "C", 1)
					gapWrite("other", "lost: no backfill for this key", 2)
					gapWrite("valve", map[string]any{"open": true}, 3)
					if withFields {
						// Same value as before with a new datetime: a new value.
						// (Without stream datetimes it would be taken for B: the
						// documented limit of bare streams.)
						gapWrite("temp", "B", 4)
					}
					gapWrite("temp", 21.5, 5)
				case s == thethings.StateConnected && n == 4:
					require.NoError(t, cause)
				}
			}
			type got struct {
				key      string
				value    any
				backfill bool
			}
			var msgs []got
			for msg, err := range c.Subscribe(testkit.Ctx(t, 0), thethings.WithBackfill("temp", "valve"), thethings.WithStateHandler(log.handler)) {
				require.NoError(t, err)
				for _, v := range msg.Values {
					value := v.Value
					if _, isMap := value.(map[string]any); !isMap {
						value = fmt.Sprint(value) // history and stream may type numbers differently
					}
					msgs = append(msgs, got{v.Key, value, msg.Backfill})
				}
				if msg.Backfill && msgs[len(msgs)-1].value == "21.5" {
					go subPost(t, srv, `{"values":[{"key":"temp","value":"F"}]}`) // live, after the backfill
				}
				if len(msg.Values) == 1 && msg.Values[0].Value == "F" {
					break
				}
			}
			want := []got{
				{"temp", "A", false},
				{"other", "not backfilled", false},
				{"temp", "B", false},
				{"temp", "C", true},
				{"valve", map[string]any{"open": true}, true},
				{"temp", "B", true},
				{"temp", "21.5", true},
				{"temp", "F", false},
			}
			if !withFields {
				want = slices.Delete(want, 5, 6)
			}
			assert.Equal(t, want, msgs)
			states, _ := log.snapshot()
			assert.Equal(t, []thethings.State{thethings.StateConnected, thethings.StateDisconnected, thethings.StateReconnecting, thethings.StateConnected}, states)
			testkit.Eventually(t, "no subscription left open on the emulator", func() bool { return srv.OpenSubscriptions() == 0 })
		})
	}
}

func TestSubscribeBackfillReadFailure(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{StreamCutAfter: 300 * time.Millisecond}))
	var log stateLog
	log.hook = func(n int, s thethings.State, cause error) {
		switch {
		case s == thethings.StateDisconnected && n == 2:
			require.NoError(t, srv.Seed(sentinelToken, "temp", thethingstest.Record{Key: "temp", Value: json.RawMessage(`1`), Datetime: time.Now()}))
			srv.SetFaults(thethingstest.Faults{Every503: 1}) // history reads fail
		case s == thethings.StateConnected && cause != nil:
			srv.SetFaults(thethingstest.Faults{})
			go subPost(t, srv, `{"values":[{"key":"temp","value":"live"}]}`)
		}
	}
	for msg, err := range c.Subscribe(testkit.Ctx(t, 0), thethings.WithBackfill("temp"), thethings.WithStateHandler(log.handler)) {
		require.NoError(t, err, "a failed backfill does not end the subscription")
		assert.False(t, msg.Backfill)
		assert.Equal(t, "live", msg.Values[0].Value)
		break
	}
	states, causes := log.snapshot()
	require.Equal(t, []thethings.State{thethings.StateConnected, thethings.StateDisconnected, thethings.StateReconnecting,
		thethings.StateConnected, thethings.StateConnected}, states)
	assert.ErrorContains(t, causes[4], `backfill of "temp"`)
	var ae *thethings.APIError
	require.ErrorAs(t, causes[4], &ae)
	assert.Equal(t, http.StatusServiceUnavailable, ae.StatusCode)
	assert.NotContains(t, causes[4].Error(), sentinelToken)
}

// scriptedStreams is an in-memory stream transport for synctest bubbles,
// where real sockets cannot be used: attempt n (from 1) is answered by
// script(n, req), or never when that is nil. It records when each attempt came.
type scriptedStreams struct {
	mu       sync.Mutex
	attempts []time.Time
	script   func(n int, req *http.Request) *http.Response
}

func (s *scriptedStreams) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	s.attempts = append(s.attempts, time.Now())
	n := len(s.attempts)
	s.mu.Unlock()
	if resp := s.script(n, req); resp != nil {
		return resp, nil
	}
	// No answer: a server that never sends its headers.
	<-req.Context().Done()
	return nil, context.Cause(req.Context())
}

func (s *scriptedStreams) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.attempts...)
}

// pipeStream answers 200 with a body fed by write; the body is a pipe, so
// the "server" blocks when the client does not read, like a socket. steps
// are frames to write, or time.Duration pauses; after them the stream
// stays open until the request ends (hold) or ends with EOF.
func pipeStream(req *http.Request, hold bool, steps ...any) *http.Response {
	pr, pw := io.Pipe()
	go func() {
		for _, st := range steps {
			switch st := st.(type) {
			case time.Duration:
				select {
				case <-time.After(st):
				case <-req.Context().Done():
					pw.CloseWithError(context.Cause(req.Context()))
					return
				}
			case string:
				if _, err := io.WriteString(pw, st); err != nil {
					return
				}
			}
		}
		if hold {
			<-req.Context().Done()
			pw.CloseWithError(context.Cause(req.Context()))
			return
		}
		pw.Close()
	}()
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: pr, Request: req}
}

const subscribedFrame = `{"status":"success","message":"subscribed"}`

func TestSubscribeIdleTimeoutInBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s := &scriptedStreams{script: func(n int, req *http.Request) *http.Response {
			if n == 1 {
				// Two keep-alives, then silence with the socket open.
				return pipeStream(req, true, subscribedFrame, 5*time.Second, "{}", 5*time.Second, "{}")
			}
			return pipeStream(req, true, subscribedFrame, `[{"key":"k","value":1}]`)
		}}
		_, c := setup(t, offlineURL, thethings.WithStreamHTTPClient(&http.Client{Transport: s}), thethings.WithRetry(thethings.RetryPolicy{MinWait: time.Second, MaxWait: 4 * time.Second}))
		var log stateLog
		var disconnectedAt time.Duration
		log.hook = func(_ int, st thethings.State, _ error) {
			if st == thethings.StateDisconnected {
				disconnectedAt = time.Since(start)
			}
		}
		for msg, err := range c.Subscribe(t.Context(), thethings.WithKeepAlive(5*time.Second), thethings.WithStateHandler(log.handler)) {
			require.NoError(t, err)
			assert.Equal(t, "k", msg.Values[0].Key)
			break
		}
		states, causes := log.snapshot()
		require.Equal(t, []thethings.State{thethings.StateConnected, thethings.StateDisconnected, thethings.StateReconnecting, thethings.StateConnected}, states)
		assert.ErrorIs(t, causes[1], thethings.ErrIdleTimeout)
		assert.Equal(t, 10*time.Second+7*time.Second, disconnectedAt, "idle timeout = keepAlive + 2s after the last keep-alive")
		at := s.times()
		require.Len(t, at, 2)
		wait := at[1].Sub(at[0]) - 17*time.Second
		assert.True(t, wait >= 500*time.Millisecond && wait <= time.Second, "first backoff %s within [MinWait/2, MinWait]", wait)
	})
}

func TestSubscribeSlowConsumerIsNotIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &scriptedStreams{script: func(_ int, req *http.Request) *http.Response {
			return pipeStream(req, true, subscribedFrame, `[{"key":"k","value":1}]`, `{}`, `[{"key":"k","value":2}]`)
		}}
		_, c := setup(t, offlineURL, thethings.WithStreamHTTPClient(&http.Client{Transport: s}), thethings.WithRetry(thethings.RetryPolicy{}))
		var log stateLog
		var got []any
		for msg, err := range c.Subscribe(t.Context(), thethings.WithKeepAlive(time.Second), thethings.WithStateHandler(log.handler)) {
			require.NoError(t, err)
			got = append(got, msg.Values[0].Value)
			if len(got) == 2 {
				break
			}
			time.Sleep(10 * time.Minute) // the consumer is busy; the stream waits in its buffer
		}
		assert.Equal(t, []any{json.Number("1"), json.Number("2")}, got)
		assert.Equal(t, 0, log.count(thethings.StateDisconnected))
		assert.Len(t, s.times(), 1)
	})
}

func TestSubscribeBackoffSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &scriptedStreams{script: func(_ int, req *http.Request) *http.Response {
			return httpmock.NewStringResponse(http.StatusInternalServerError, `{"status":"error","message":"down"}`)
		}}
		_, c := setup(t, offlineURL, thethings.WithStreamHTTPClient(&http.Client{Transport: s}), thethings.WithRetry(thethings.RetryPolicy{MinWait: time.Second, MaxWait: 8 * time.Second}))
		var errs []error
		for _, err := range c.Subscribe(t.Context(), thethings.WithReconnect(10)) {
			errs = append(errs, err)
		}
		require.Len(t, errs, 1)
		at := s.times()
		require.Len(t, at, 11)
		for i := 1; i < len(at); i++ {
			base := min(time.Second<<(i-1), 8*time.Second)
			gap := at[i].Sub(at[i-1])
			assert.True(t, gap >= base/2 && gap <= base, "wait %d is %s, want within [%s, %s]", i, gap, base/2, base)
		}
	})
}

func TestSubscribeRetryAfterOnReconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &scriptedStreams{script: func(n int, req *http.Request) *http.Response {
			switch n {
			case 1:
				return pipeStream(req, false, subscribedFrame) // then EOF
			case 2:
				resp := httpmock.NewStringResponse(http.StatusServiceUnavailable, `{"status":"error","message":"busy"}`)
				resp.Header.Set("Retry-After", "3")
				return resp
			case 3:
				resp := httpmock.NewStringResponse(http.StatusTooManyRequests, `{"status":"error","message":"slow down"}`)
				resp.Header.Set("Retry-After", "120")
				return resp
			}
			return pipeStream(req, true, subscribedFrame, `[{"key":"k","value":"ok"}]`)
		}}
		_, c := setup(t, offlineURL, thethings.WithStreamHTTPClient(&http.Client{Transport: s}), thethings.WithRetry(thethings.RetryPolicy{MinWait: time.Second, MaxWait: 10 * time.Second}))
		var log stateLog
		for msg, err := range c.Subscribe(t.Context(), thethings.WithStateHandler(log.handler)) {
			require.NoError(t, err, "errors while reconnecting go to the state handler")
			assert.Equal(t, "ok", msg.Values[0].Value)
			break
		}
		at := s.times()
		require.Len(t, at, 4)
		assert.Equal(t, 3*time.Second, at[2].Sub(at[1]), "Retry-After honoured")
		assert.Equal(t, 10*time.Second, at[3].Sub(at[2]), "Retry-After clamped to MaxWait")
		_, causes := log.snapshot()
		var rateLimited, unavailable bool
		for _, e := range causes {
			rateLimited = rateLimited || errors.Is(e, thethings.ErrRateLimited)
			var ae *thethings.APIError
			unavailable = unavailable || (errors.As(e, &ae) && ae.StatusCode == http.StatusServiceUnavailable)
		}
		assert.True(t, rateLimited && unavailable)
	})
}

func TestSubscribeBudgetResetsAfterHealthyFrame(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &scriptedStreams{script: func(n int, req *http.Request) *http.Response {
			switch {
			case n >= 9:
				return pipeStream(req, true, subscribedFrame, `[{"key":"k","value":"through"}]`)
			case n%2 == 1:
				return pipeStream(req, false, subscribedFrame, `{}`) // healthy, then EOF
			}
			return httpmock.NewStringResponse(http.StatusBadGateway, "")
		}}
		_, c := setup(t, offlineURL, thethings.WithStreamHTTPClient(&http.Client{Transport: s}), thethings.WithRetry(thethings.RetryPolicy{MinWait: time.Second, MaxWait: 2 * time.Second}))
		for msg, err := range c.Subscribe(t.Context(), thethings.WithReconnect(2)) {
			require.NoError(t, err, "two failures in a row never exceed the budget of 2")
			assert.Equal(t, "through", msg.Values[0].Value)
			break
		}
		assert.Len(t, s.times(), 9)
	})
}

func TestSubscribeCancelDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &scriptedStreams{script: func(_ int, req *http.Request) *http.Response {
			resp := httpmock.NewStringResponse(http.StatusServiceUnavailable, "")
			resp.Header.Set("Retry-After", "3600")
			return resp
		}}
		_, c := setup(t, offlineURL, thethings.WithStreamHTTPClient(&http.Client{Transport: s}), thethings.WithRetry(thethings.RetryPolicy{MinWait: time.Second, MaxWait: time.Hour}))
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		var errs []error
		for _, err := range c.Subscribe(ctx) {
			errs = append(errs, err)
		}
		assert.Empty(t, errs, "ctx's end is no error")
		assert.Equal(t, time.Minute, time.Since(start), "the wait ends with ctx")
		assert.Len(t, s.times(), 1)
	})
}

// A platform that accepts the subscription and drops it at once does not
// reset the backoff: the waits keep growing to MaxWait, instead of a
// reconnect storm at MinWait (issue 20). Waiting on a connection that
// lived, one that delivered a message, starts the backoff over.
func TestSubscribeNoReconnectStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const deliverAt = 8 // this connection delivers a message, then drops
		s := &scriptedStreams{script: func(n int, req *http.Request) *http.Response {
			if n == deliverAt {
				return pipeStream(req, false, subscribedFrame, `[{"key":"k","value":1}]`)
			}
			return pipeStream(req, false, subscribedFrame) // accepted, then EOF
		}}
		_, c := setup(t, offlineURL, thethings.WithStreamHTTPClient(&http.Client{Transport: s}), thethings.WithRetry(thethings.RetryPolicy{MinWait: time.Second, MaxWait: 8 * time.Second}))
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		var got int
		for _, err := range c.Subscribe(ctx) {
			require.NoError(t, err)
			got++
		}
		assert.Equal(t, 1, got)
		at := s.times()
		// 1+2+4+8+8+... s: about 20 attempts in two minutes, not 160.
		require.Less(t, len(at), 30, "a reconnect storm")
		require.Greater(t, len(at), deliverAt+1)
		for i := 1; i < len(at); i++ {
			n := i - 1          // waits since the backoff last started over
			if i >= deliverAt { // the wait after the connection that delivered
				n = i - deliverAt
			}
			base := min(time.Second<<n, 8*time.Second)
			gap := at[i].Sub(at[i-1])
			assert.True(t, gap >= base/2 && gap <= base, "wait %d is %s, want within [%s, %s]", i, gap, base/2, base)
		}
	})
}

// The watchdog covers the connect too: a server that takes the connection
// and never answers is given up after the idle timeout, keepAlive + 2s.
func TestHostileSubscribeWatchdogCoversConnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A stream transport without any header timeout: only the
		// watchdog can end the attempt.
		s := &scriptedStreams{script: func(int, *http.Request) *http.Response { return nil }}
		_, c := setup(t, offlineURL, thethings.WithStreamHTTPClient(&http.Client{Transport: s}))
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		var log stateLog
		start := time.Now()
		var last error
		for _, err := range c.Subscribe(ctx, thethings.WithKeepAlive(time.Second),
			thethings.WithReconnect(0), thethings.WithStateHandler(log.handler)) {
			last = err
		}
		require.Error(t, last)
		assert.ErrorIs(t, last, thethings.ErrIdleTimeout)
		assert.NotErrorIs(t, last, context.DeadlineExceeded)
		assert.Equal(t, 3*time.Second, time.Since(start), "the attempt lasts the idle timeout (3s)")
	})
}

// A state handler slower than the idle timeout does not get a healthy
// connection killed.
func TestHostileSubscribeSlowStateHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A keep-alive every 500ms, every fourth frame a value.
		steps := []any{subscribedFrame}
		for n := range 8 {
			frame := `{}`
			if n%4 == 3 {
				frame = `[{"key":"k","value":1}]`
			}
			steps = append(steps, 500*time.Millisecond, frame)
		}
		s := &scriptedStreams{script: func(_ int, req *http.Request) *http.Response { return pipeStream(req, true, steps...) }}
		_, c := setup(t, offlineURL, thethings.WithStreamHTTPClient(&http.Client{Transport: s}))
		slow := func(st thethings.State, _ error) {
			if st == thethings.StateConnected {
				time.Sleep(3500 * time.Millisecond) // keep-alive 1s: idle timeout 3s
			}
		}
		msgs := 0
		for msg, err := range c.Subscribe(t.Context(), thethings.WithKeepAlive(time.Second), thethings.WithStateHandler(slow)) {
			require.NoError(t, err)
			msgs += len(msg.Values)
			if msgs == 2 {
				break
			}
		}
		assert.Equal(t, 2, msgs)
		assert.Len(t, s.times(), 1, "one healthy connection, never killed")
	})
}

func TestHostileSubscribeFramesGoOn(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conns.Add(1)
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"status":"success","message":"subscribed"}`)
		// An oversize frame, then one with a malformed item between good ones.
		_, _ = io.WriteString(w, `[{"key":"big","value":"`+strings.Repeat("x", 8<<10)+`"}]`)
		_, _ = io.WriteString(w, `[{"key":"a","value":1},{"key":"bad","value":01},{"key":"b","value":2}]`)
		_, _ = io.WriteString(w, `[{"key":"c","value":3}]`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	var keys []string
	var errs []error
	for msg, err := range c.Subscribe(testkit.Ctx(t, 0), thethings.WithMaxFrameSize(4<<10)) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, v := range msg.Values {
			keys = append(keys, v.Key)
		}
		if len(keys) == 3 {
			break
		}
	}
	assert.Equal(t, []string{"a", "b", "c"}, keys)
	require.Len(t, errs, 2)
	assert.ErrorIs(t, errs[0], thethings.ErrFrameTooLarge)
	assert.ErrorIs(t, errs[1], thethings.ErrInvalidValue)
	assert.Equal(t, int32(1), conns.Load())
}

func TestHostileSubscribeInvalidMaxFrameSize(t *testing.T) {
	t.Parallel()
	_, c := setup(t, "http://127.0.0.1:1")
	for _, n := range []int{-1, 0, 100, 2 << 30} {
		for _, err := range c.Subscribe(context.Background(), thethings.WithMaxFrameSize(n)) {
			assert.ErrorIs(t, err, thethings.ErrInvalidOption, n)
		}
	}
}

// Values delivered live on a backfill key, dated far in the future, are
// remembered as small fingerprints, and not for ever.
func TestHostileBackfillBookkeepingIsBounded(t *testing.T) {
	if !inOwnProcess(t) {
		return
	}
	const n, size = 5000, 16 << 10
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		bw := bufio.NewWriterSize(w, 64<<10)
		_, _ = bw.WriteString(`{"status":"success","message":"subscribed"}`)
		pad := strings.Repeat("v", size)
		for i := range n {
			at := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
			_, _ = fmt.Fprintf(bw, `[{"key":"k","value":"%d%s","datetime":%q}]`, i, pad, at.Format("2006-01-02T15:04:05.000Z"))
		}
		_ = bw.Flush()
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := 0
	var after uint64
	for msg, err := range c.Subscribe(ctx, thethings.WithBackfill("k")) {
		require.NoError(t, err, "after %d values", got)
		got += len(msg.Values)
		if got == n {
			// Inside the loop the subscription, and what it keeps, is alive.
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			after = ms.HeapAlloc
			break
		}
	}
	require.Equal(t, n, got)
	t.Logf("heap in use after GC with %d values of %d KiB delivered: %.1f MiB", n, size>>10, float64(after)/mib)
	assert.Less(t, after, uint64(16*mib))
}

// subGot is one value a subscription delivered.
type subGot struct {
	value    string
	backfill bool
}

func (g subGot) String() string {
	if g.backfill {
		return g.value + " backfill"
	}
	return g.value + " live"
}

// TestFaultMatrixSubscribe is Subscribe's row of the fault matrix
// (faults_test.go): each cell runs through runCell.
func TestFaultMatrixSubscribe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		faultCell
		opts []thethings.SubscribeOption
		// Values 0..last are written one at a time: value 0 once
		// connected, value k once k-1 arrived, or, for k in gap, at the
		// next disconnection, so that only a backfill can deliver it.
		last int
		gap  map[int]bool
		// stopAfter: leave the loop when this value arrived (-1: run until
		// the sequence ends).
		stopAfter int
		want      []string
		is        error
	}{
		{faultCell: faultCell{name: "no fault"}, last: 2, stopAfter: 2, want: []string{"0 live", "1 live", "2 live"}},
		{faultCell: faultCell{name: "frames split byte by byte", faults: thethingstest.Faults{SplitFrames: true}},
			last: 2, stopAfter: 2, want: []string{"0 live", "1 live", "2 live"}},
		{faultCell: faultCell{name: "frames coalesced", faults: thethingstest.Faults{CoalesceFrames: true}},
			last: 2, stopAfter: 2, want: []string{"0 live", "1 live", "2 live"}},
		// The stream is cut; what was written meanwhile comes from history,
		// once, before the next live value.
		{faultCell: faultCell{name: "stream cut: reconnected and backfilled", faults: thethingstest.Faults{StreamCutAfter: 300 * time.Millisecond}},
			opts: []thethings.SubscribeOption{thethings.WithBackfill("k")}, last: 2, gap: map[int]bool{1: true}, stopAfter: 2,
			want: []string{"0 live", "1 backfill", "2 live"}},
		{faultCell: faultCell{name: "stream cut, backfill reads answered 503: retried", faults: thethingstest.Faults{StreamCutAfter: 300 * time.Millisecond, Every503: 2}, prime: 1},
			opts: []thethings.SubscribeOption{thethings.WithBackfill("k")}, last: 2, gap: map[int]bool{1: true}, stopAfter: 2,
			want: []string{"0 live", "1 backfill", "2 live"}},
		{faultCell: faultCell{name: "stream cut, no reconnect: ends", faults: thethingstest.Faults{StreamCutAfter: 300 * time.Millisecond}},
			opts: []thethings.SubscribeOption{thethings.WithReconnect(0)}, last: 0, stopAfter: -1, want: []string{"0 live"}, is: errAnyTransport},
		// Silent keep-alives: the watchdog gives up after keepAlive + 2s.
		{faultCell: faultCell{name: "silent keep-alives: idle timeout", faults: thethingstest.Faults{StopKeepAlives: true}},
			opts: []thethings.SubscribeOption{thethings.WithReconnect(0)}, last: 0, stopAfter: -1, want: []string{"0 live"}, is: thethings.ErrIdleTimeout},
		{faultCell: faultCell{name: "latency past deadline", faults: thethingstest.Faults{Latency: 3 * time.Second}, deadline: 150 * time.Millisecond},
			last: 0, stopAfter: -1, is: context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []subGot
			var states []string
			_, err := runCell(t, tc.faultCell, func(env faultEnv) error {
				ctx, cancel := context.WithCancel(env.ctx)
				defer cancel()
				next := 0 // the next value to write
				var writeErr error
				write := func() {
					if next > tc.last || writeErr != nil {
						return
					}
					if writeErr = env.c.Write(ctx, []thethings.Value{{Key: "k", Value: next}}); writeErr != nil {
						cancel()
					}
					next++
				}
				onState := func(s thethings.State, cause error) {
					states = append(states, fmt.Sprint(s, " ", cause))
					switch {
					case s == thethings.StateConnected && next == 0:
						write()
					case s == thethings.StateDisconnected && tc.gap[next]:
						write()
					}
				}
				opts := append([]thethings.SubscribeOption{thethings.WithKeepAlive(time.Second), thethings.WithStateHandler(onState)}, tc.opts...)
				for msg, err := range env.c.Subscribe(ctx, opts...) {
					if err != nil {
						return errors.Join(writeErr, err)
					}
					for _, v := range msg.Values {
						got = append(got, subGot{value: fmt.Sprint(v.Value), backfill: msg.Backfill})
						if tc.stopAfter >= 0 && v.Value == json.Number(strconv.Itoa(tc.stopAfter)) {
							return writeErr
						}
					}
					if !tc.gap[next] {
						write()
					}
				}
				if err := ctx.Err(); err != nil {
					// The sequence ends silently when ctx ends.
					return errors.Join(writeErr, err)
				}
				return errors.New("the sequence ended without error")
			})
			checkReadError(t, err, tc.is)
			gotS := make([]string, len(got))
			for i, g := range got {
				gotS[i] = g.String()
			}
			assert.Equal(t, tc.want, append([]string(nil), gotS...), "states: %q", states)
		})
	}
}
