package thethings_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// ambiguousFaults are the outages that store a write and then tell the
// client nothing useful: a 5xx from the platform or a proxy, or a
// connection dropped after the store.
var ambiguousFaults = map[string]thethingstest.Faults{
	"500":             {StoreThenFailStatus: 500},
	"502":             {StoreThenFailStatus: 502},
	"503":             {StoreThenFailStatus: 503},
	"503 Retry-After": {StoreThenFailStatus: 503, StoreThenFailRetryAfter: time.Millisecond},
	"504":             {StoreThenFailStatus: 504},
	"dropped":         {DropStores: true},
}

// every makes f strike every nth write request.
func every(f thethingstest.Faults, n int) thethingstest.Faults {
	if f.DropStores {
		f.DropEvery = n
	} else {
		f.StoreThenFailEvery = n
	}
	return f
}

// assertStoredOnce checks that key holds exactly the ints 0..n-1, once each.
func assertStoredOnce(t *testing.T, srv *thethingstest.Server, key string, n int) {
	t.Helper()
	assert.Zero(t, srv.Duplicates(), "duplicates")
	got := ints(t, srv.Stored(sentinelToken, key))
	assert.Len(t, got, n)
	seen := map[int]int{}
	for _, v := range got {
		seen[v]++
	}
	for v := range n {
		if seen[v] != 1 {
			t.Errorf("value %d stored %d times", v, seen[v])
			break
		}
	}
}

// TestWriterExactlyOnceUnderAmbiguousFaults: 20,000 values through a Writer
// while every 7th write is stored and then answered with a 5xx or dropped.
// Every value is stored exactly once and the error handler is never called.
func TestWriterExactlyOnceUnderAmbiguousFaults(t *testing.T) {
	t.Parallel()
	for name, f := range ambiguousFaults {
		t.Run(name, func(t *testing.T) {
			srv, c := setup(t, thethingstest.WithFaults(every(f, 7)))
			w := mustWriter(t, c, thethings.WithFlushInterval(0), thethings.WithErrorHandler(func(we *thethings.WriteError) {
				t.Errorf("error handler called: %v", we)
			}))
			ctx := context.Background()
			const n = 20000
			for i := 0; i < n; i += 100 {
				require.NoError(t, w.Add(ctx, intValues("n", i, 100)...))
			}
			require.NoError(t, w.Close(ctx))
			assertStoredOnce(t, srv, "n", n)
			st := w.Stats()
			assert.Zero(t, st.Pending)
			assert.Zero(t, st.Failed)
			assert.Positive(t, st.Verified, "ambiguous batches were found stored")
			assert.Equal(t, int64(n), st.Sent+st.Verified+st.Resent, "every value confirmed once")
			// One read per ambiguous batch: every 7th of about 200 writes.
			assert.LessOrEqual(t, srv.Requests(thethingstest.RouteRead), srv.Requests(thethingstest.RouteWrite)/7+1)
		})
	}
}

// TestWriteExactlyOnceUnderAmbiguousFaults: the same for Write, 300 dated
// values per fault kind, every second write faulted.
func TestWriteExactlyOnceUnderAmbiguousFaults(t *testing.T) {
	t.Parallel()
	for name, f := range ambiguousFaults {
		t.Run(name, func(t *testing.T) {
			srv, c := setup(t, thethingstest.WithFaults(every(f, 2)))
			vals := intValues("n", 0, 300, time.Now())
			require.NoError(t, c.Write(context.Background(), vals))
			assertStoredOnce(t, srv, "n", 300)
			assert.Equal(t, 3, srv.Requests(thethingstest.RouteWrite), "nothing sent again: each ambiguous batch was found whole")
			assert.Equal(t, 1, srv.Requests(thethingstest.RouteRead), "one read for the one ambiguous batch")
		})
	}
}

// TestWriteResendsOnlyTheMissing: a write dropped before the platform
// stored it is read back, found missing and sent again, once.
func TestWriteResendsOnlyTheMissing(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{DropEvery: 2}))
	vals := intValues("n", 0, 200, time.Now())
	require.NoError(t, c.Write(context.Background(), vals))
	assertStoredOnce(t, srv, "n", 200)
	assert.Equal(t, 3, srv.Requests(thethingstest.RouteWrite))
	assert.Equal(t, 1, srv.Requests(thethingstest.RouteRead))
}

// TestVerifyCountsDuplicatesAsAMultiset: identical values (same key,
// millisecond and value) in one batch are counted: of three sent, the read
// back finds as many as the platform holds.
func TestVerifyCountsDuplicatesAsAMultiset(t *testing.T) {
	t.Parallel()
	for _, inclusive := range []bool{false, true} {
		t.Run(fmt.Sprint("endDate inclusive ", inclusive), func(t *testing.T) {
			srv, c := setup(t, thethingstest.WithEndDateInclusive(inclusive),
				thethingstest.WithFaults(thethingstest.Faults{StoreThenFailEvery: 1, StoreThenFailStatus: 502}))
			at := time.Now().UTC().Truncate(time.Millisecond)
			vals := []thethings.Value{
				{Key: "n", Value: 7, Datetime: at}, {Key: "n", Value: 7, Datetime: at}, {Key: "n", Value: 7, Datetime: at},
				{Key: "n", Value: 8, Datetime: at.Add(time.Millisecond)},
			}
			// Stored, then 502: the read back finds all four.
			require.NoError(t, c.Write(context.Background(), vals))
			assert.Len(t, srv.Stored(sentinelToken, "n"), 4)
			assert.Equal(t, 1, srv.Requests(thethingstest.RouteWrite))
			assert.Equal(t, 1, srv.Requests(thethingstest.RouteRead))
		})
	}
}

// TestWriteHappyPathSendsNothingElse: verification costs no request when
// nothing goes wrong.
func TestWriteHappyPathSendsNothingElse(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	w := mustWriter(t, c, thethings.WithFlushInterval(0))
	ctx := context.Background()
	for i := 0; i < 1000; i += 100 {
		require.NoError(t, w.Add(ctx, intValues("n", i, 100)...))
	}
	require.NoError(t, w.Close(ctx))
	require.NoError(t, c.Write(ctx, intValues("m", 0, 300, time.Now())))
	assert.Equal(t, 13, srv.Requests(thethingstest.RouteWrite))
	assert.Zero(t, srv.Requests(thethingstest.RouteRead))
	st := w.Stats()
	assert.False(t, st.LastSuccess.IsZero())
	st.LastSuccess = time.Time{}
	assert.Equal(t, thethings.WriterStats{Sent: 1000, Online: true}, st)
}

// TestWriterPermanentRefusalReachesHandler: a refusal of the thing (v0.3:
// it pauses delivery and keeps the values) reaches the handler once,
// without values; Close, when its context ends, reports them unsent.
func TestWriterPermanentRefusalReachesHandler(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)
	c, err := thethings.NewClient("unknown-thing-token", thethings.WithBaseURL(srv.URL()), fastRetry)
	require.NoError(t, err)
	h := new(pauseHandler)
	w := mustWriter(t, c, thethings.WithErrorHandler(h.handle))
	vals := intValues("n", 0, 3)
	require.NoError(t, w.Add(context.Background(), vals...))
	go func() { _ = w.Flush(context.Background()) }()
	h.wait(t)
	st := w.Stats()
	assert.Zero(t, st.Failed)
	assert.ErrorIs(t, st.LastError, thethings.ErrThingNotFound)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = w.Close(ctx)
	assert.ErrorIs(t, err, thethings.ErrThingNotFound)
	notWritten, unknown := thethings.FailedValues(err)
	assert.ElementsMatch(t, ints(t, vals), ints(t, append(notWritten, unknown...)))
	handled := h.all()
	require.Len(t, handled, 1)
	assert.Empty(t, handled[0].Values)
	assert.ErrorIs(t, handled[0], thethings.ErrThingNotFound)
}

// TestWriterNilContext: a nil context is an error, never a panic.
func TestWriterNilContext(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	w := mustWriter(t, c)
	//lint:ignore SA1012 a nil context is what is tested
	assert.ErrorIs(t, w.Add(nil, intValues("n", 0, 1)...), thethings.ErrInvalidOption) //nolint:staticcheck
	//lint:ignore SA1012 a nil context is what is tested
	assert.ErrorIs(t, w.Flush(nil), thethings.ErrInvalidOption) //nolint:staticcheck
	//lint:ignore SA1012 a nil context is what is tested
	assert.ErrorIs(t, w.Close(nil), thethings.ErrInvalidOption) //nolint:staticcheck
	require.NoError(t, w.Close(context.Background()))
}

// TestWriterOutage: the platform is unreachable for 3 s in the middle of a
// run. The writer says it is offline, keeps every value, and once the
// platform is back delivers them all, once.
func TestWriterOutage(t *testing.T) {
	srv, _ := setup(t, thethingstest.WithFaults(thethingstest.Faults{DropEvery: 9, DropStores: true}))
	ignore := goleak.IgnoreCurrent()
	px := startProxy(t, srv.URL())
	_, c := setup(t, px.url)
	w := mustWriter(t, c, thethings.WithBatchSize(50), thethings.WithFlushInterval(20*time.Millisecond))
	ctx := context.Background()
	const n = 3000
	sawOffline := false
	for i := 0; i < n; i += 10 {
		if i == 600 {
			px.down()
		}
		if i == 2400 {
			px.up()
		}
		require.NoError(t, w.Add(ctx, intValues("n", i, 10)...))
		time.Sleep(17 * time.Millisecond)                            // 3 s of outage over 1,800 values
		if st := w.Stats(); !st.Online && !st.LastSuccess.IsZero() { // v0.3: offline before any answer too
			sawOffline = true
			assert.Positive(t, st.Pending)
			assert.Error(t, st.LastError)
		}
	}
	require.NoError(t, w.Flush(ctx))
	st := w.Stats()
	assert.True(t, sawOffline, "Stats showed the outage")
	assert.True(t, st.Online)
	assert.Zero(t, st.Pending)
	require.NoError(t, w.Close(ctx))
	px.close()
	assertStoredOnce(t, srv, "n", n)
	goleak.VerifyNone(t, ignore)
}

// proxy forwards TCP connections to a server; down closes its listener and
// every connection, up listens again on the same address.
type proxy struct {
	t      *testing.T
	addr   string
	target string
	url    string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, targetURL string) *proxy {
	t.Helper()
	var host string
	_, err := fmt.Sscanf(targetURL, "http://%s", &host)
	require.NoError(t, err)
	host = host[:len(host)-len("/v2/")]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{t: t, addr: ln.Addr().String(), target: host, conns: map[net.Conn]bool{}}
	p.url = "http://" + p.addr + "/v2/"
	p.serve(ln)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			p.wg.Add(2)
			go p.pipe(c, up)
			go p.pipe(up, c)
		}
	}()
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

func (p *proxy) up() {
	ln, err := net.Listen("tcp", p.addr)
	require.NoError(p.t, err)
	p.serve(ln)
}

func (p *proxy) close() {
	p.down()
	p.wg.Wait()
}

// TestWriterMixedBatch: in one ambiguous batch, the values with a Datetime
// are read back and found; those without one, which cannot be, are
// reported Unknown, and nothing is sent twice.
func TestWriterMixedBatch(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{StoreThenFailEvery: 1, StoreThenFailStatus: 504}))
	var mu sync.Mutex
	var unknown []thethings.Value
	w := mustWriter(t, c, thethings.WithServerTimestamps(), thethings.WithFlushInterval(0),
		thethings.WithErrorHandler(func(we *thethings.WriteError) {
			mu.Lock()
			defer mu.Unlock()
			assert.True(t, we.Unknown)
			unknown = append(unknown, we.Values...)
		}))
	vals := intValues("n", 0, 10)
	at := time.Now()
	for i := range vals {
		if i%2 == 0 {
			vals[i].Datetime = at.Add(time.Duration(i) * time.Millisecond)
		}
	}
	require.NoError(t, w.Add(context.Background(), vals...))
	err := w.Close(context.Background())
	assert.ErrorIs(t, err, thethings.ErrOutcomeUnknown)
	mu.Lock()
	assert.Equal(t, []int{1, 3, 5, 7, 9}, ints(t, unknown))
	mu.Unlock()
	assert.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, ints(t, srv.Stored(sentinelToken, "n")))
	assert.Equal(t, 1, srv.Requests(thethingstest.RouteWrite))
	st := w.Stats()
	assert.Equal(t, int64(5), st.Verified)
	assert.Equal(t, int64(5), st.Failed)
}

// TestWriterStampsIdenticalValuesApart: identical values of one key added
// in the same millisecond get different stamps, so that a read back for one
// batch cannot count a value of an earlier batch as its own. Here the second
// of two batches of one is dropped unstored: it must be sent again, not
// taken for the first one.
func TestWriterStampsIdenticalValuesApart(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{DropEvery: 2}))
	w := mustWriter(t, c, thethings.WithBatchSize(1), thethings.WithFlushInterval(0))
	ctx := context.Background()
	require.NoError(t, w.Add(ctx, thethings.Value{Key: "n", Value: 5}, thethings.Value{Key: "n", Value: 5.0}, thethings.Value{Key: "n", Value: 6}))
	require.NoError(t, w.Close(ctx))
	assert.Equal(t, []int{5, 5, 6}, ints(t, srv.Stored(sentinelToken, "n")))
	assert.Zero(t, srv.Duplicates())
	var fives []time.Time
	for _, r := range srv.Stored(sentinelToken, "n") {
		if string(r.Value) == "5" {
			fives = append(fives, r.Datetime)
		}
	}
	require.Len(t, fives, 2)
	assert.NotEqual(t, fives[0], fives[1], "identical values, distinct milliseconds")
}

// TestWriteVerifiesAKeyNeverStored: the read back of a key the platform
// never stored answers 404 "resource not found": none of its values is
// stored, which is an answer, not an error. They are sent again.
func TestWriteVerifiesAKeyNeverStored(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, thethingstest.WithFaults(thethingstest.Faults{DropEvery: 2}))
	ctx := context.Background()
	require.NoError(t, c.Write(ctx, intValues("a", 0, 3, time.Now())))
	// Dropped unstored: key n does not exist when it is read back.
	require.NoError(t, c.Write(ctx, intValues("n", 0, 5, time.Now())))
	assertStoredOnce(t, srv, "n", 5)
	assert.Equal(t, 3, srv.Requests(thethingstest.RouteWrite))
	assert.Equal(t, 1, srv.Requests(thethingstest.RouteRead))
}

// TestVerifyNegativeZero: the platform answers -0 as 0 (JavaScript's
// JSON.stringify does): a read back still finds a value written as -0,
// alone or inside an array.
func TestVerifyNegativeZero(t *testing.T) {
	t.Parallel()
	at := time.Now().UTC().Truncate(time.Millisecond)
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			_, _ = io.Copy(io.Discard, r.Body)
			if posts.Add(1) == 1 {
				// Stored, then the connection is lost.
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close()
				}
				return
			}
			w.WriteHeader(http.StatusCreated)
			return
		}
		d := at.Format("2006-01-02T15:04:05.000Z")
		fmt.Fprintf(w, `[{"value":0,"datetime":%q},{"value":[0],"datetime":%q}]`, d, d)
	}))
	defer srv.Close()
	_, c := setup(t, srv.URL+"/v2/")
	negZero := math.Copysign(0, -1)
	vals := []thethings.Value{{Key: "z", Value: negZero, Datetime: at}, {Key: "z", Value: []any{negZero}, Datetime: at}}
	require.NoError(t, c.Write(context.Background(), vals))
	assert.Equal(t, int32(1), posts.Load(), "found stored: not sent again")
}
