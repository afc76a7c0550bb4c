package thethings_test

// Tests against hostile or broken servers: endless and oversized answers,
// compressed bombs, bodies cut by resets, stalls, short pages, echoes of
// the token. Each call is bounded by a deadline, so that a regression
// fails instead of hanging the suite. Memory bounds are measured as the
// peak heap sampled while the call runs, in a process of their own.

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
)

// endless answers prefix, then unit until the client goes away;
// compressed, gzipped: a small answer that decodes to a large one.
func endless(w http.ResponseWriter, compressed bool, prefix, unit string) {
	w.Header().Set("Content-Type", "application/json")
	var out io.Writer = w
	if compressed {
		w.Header().Set("Content-Encoding", "gzip")
		gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		defer gz.Close()
		out = gz
	}
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(out, 64<<10)
	_, _ = bw.WriteString(prefix)
	u := []byte(strings.Repeat(unit, max(1, (32<<10)/len(unit))))
	for {
		if _, err := bw.Write(u); err != nil {
			return
		}
	}
}

// magicOps are the calls that read one small answer.
var magicOps = map[string]func(ctx context.Context, c *thethings.Client, base string) error{
	"Settings": func(ctx context.Context, c *thethings.Client, _ string) error {
		_, err := c.Settings(ctx)
		return err
	},
	"Location": func(ctx context.Context, c *thethings.Client, _ string) error {
		_, err := c.Location(ctx)
		return err
	},
	"ServerTime": func(ctx context.Context, c *thethings.Client, _ string) error {
		_, err := c.ServerTime(ctx)
		return err
	},
	"Activate": func(ctx context.Context, _ *thethings.Client, base string) error {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		_, err := thethings.Activate(ctx, "code", "", thethings.WithBaseURL(base), thethings.WithHTTPClient(&http.Client{Transport: tr}))
		return err
	},
}

func TestHostileAnswersAreBounded(t *testing.T) {
	t.Parallel()
	for _, compressed := range []bool{false, true} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			endless(w, compressed, `[{"key":"$settings","value":{"a":"`, "a")
		}))
		t.Cleanup(ts.Close)
		for name, op := range magicOps {
			t.Run(fmt.Sprintf("%s/gzip=%v", name, compressed), func(t *testing.T) {
				_, c := setup(t, ts.URL)
				err := op(testkit.Ctx(t, 0), c, ts.URL)
				require.Error(t, err)
				assert.ErrorIs(t, err, thethings.ErrInvalidValue)
				assert.NotErrorIs(t, err, context.DeadlineExceeded)
				assert.Less(t, len(err.Error()), 300, err.Error())
				assert.True(t, strings.HasPrefix(err.Error(), "thethings: "), err.Error())
			})
		}
	}
}

func TestHostileErrorBodyIsBounded(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		bw := bufio.NewWriter(w)
		_, _ = bw.WriteString(`{"status":"error","message":"`)
		for {
			if _, err := bw.WriteString(strings.Repeat(sentinelToken, 100)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(ts.Close)
	_, c := setup(t, ts.URL)
	_, err := c.Read(testkit.Ctx(t, 0), "k", nil)
	var ae *thethings.APIError
	require.ErrorAs(t, err, &ae)
	assert.NotContains(t, err.Error(), sentinelToken)
	assert.Less(t, len(err.Error()), 1000)
}

// A Read stops decoding at the values asked for: an endless array of tiny
// items gives a page, not an out-of-memory crash.
func TestHostileReadStopsAtTheLimit(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		endless(w, false, `[`, `{"key":"k","value":1,"datetime":"2015-01-30T15:35:33.000Z"},`)
	}))
	t.Cleanup(ts.Close)
	_, c := setup(t, ts.URL)
	page, err := c.Read(testkit.Ctx(t, 0), "k", &thethings.ReadOptions{Limit: 10})
	require.NoError(t, err)
	assert.Len(t, page.Values, 10)

	// One value larger than a page may be: a typed error.
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		endless(w, false, `[{"key":"k","datetime":"2015-01-30T15:35:33.000Z","value":"`, "x")
	}))
	t.Cleanup(big.Close)
	_, bigc := setup(t, big.URL)
	_, err = bigc.Read(testkit.Ctx(t, 0), "k", &thethings.ReadOptions{Limit: 10})
	assert.ErrorIs(t, err, thethings.ErrInvalidValue)
}

// childEnv names the test a child process runs alone.
const childEnv = "THETHINGS_HOSTILE_CHILD"

// inOwnProcess runs the calling test in a child process of its own, so that
// no other test's heap is measured with it, and reports whether this is
// that child.
func inOwnProcess(t *testing.T) bool {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		return true
	}
	if raceEnabled {
		t.Skip("the race detector distorts heap figures")
	}
	if testing.Short() {
		t.Skip("memory test skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	t.Logf("child process:\n%s", out)
	if err != nil {
		t.Fatalf("child process: %v", err)
	}
	return false
}

const mib = 1 << 20

func TestHostileAnswerMemory(t *testing.T) {
	if !inOwnProcess(t) {
		return
	}
	cases := map[string]struct {
		handler http.HandlerFunc
		call    func(ctx context.Context, c *thethings.Client) error
		bound   uint64
	}{
		// Endless settings in a gzip answer, about 1 MiB for each 256 MiB.
		"Settings/gzip": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				endless(w, true, `[{"key":"$settings","value":{"a":"`, "a")
			},
			call: func(ctx context.Context, c *thethings.Client) error {
				_, err := c.Settings(ctx)
				return err
			},
			bound: 16 * mib,
		},
		// Read with limit 10 against 250 MiB of tiny items.
		"Read/tiny-items": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				bw := bufio.NewWriterSize(w, 64<<10)
				_, _ = bw.WriteString("[")
				item := `{"key":"k","value":1,"datetime":"2015-01-30T15:35:33.000Z"},`
				for n := 0; n < 250*mib; n += len(item) {
					if _, err := bw.WriteString(item); err != nil {
						return
					}
				}
				_, _ = bw.WriteString(`{"key":"k","value":1,"datetime":"2015-01-30T15:35:33.000Z"}]`)
				_ = bw.Flush()
			},
			call: func(ctx context.Context, c *thethings.Client) error {
				_, err := c.Read(ctx, "k", &thethings.ReadOptions{Limit: 10})
				return err
			},
			bound: 16 * mib,
		},
		// Values (pages of 1000) against an endless array.
		"Values/endless": {
			handler: func(w http.ResponseWriter, r *http.Request) {
				endless(w, false, `[`, `{"key":"k","value":1,"datetime":"2015-01-30T15:35:33.000Z"},`)
			},
			call: func(ctx context.Context, c *thethings.Client) error {
				n := 0
				for _, err := range c.Values(ctx, "k", nil) {
					if err != nil {
						return err
					}
					if n++; n == 5000 {
						break
					}
				}
				return nil
			},
			bound: 32 * mib,
		},
	}
	for name, tc := range cases {
		ts := httptest.NewServer(tc.handler)
		_, c := setup(t, ts.URL)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		// The peak growth of the heap in use, sampled while the call runs.
		runtime.GC()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(s)
		base := s[0].Value.Uint64()
		var peak uint64
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			sample := []metrics.Sample{{Name: s[0].Name}}
			for {
				metrics.Read(sample)
				peak = max(peak, sample[0].Value.Uint64())
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		err := tc.call(ctx, c)
		close(stop)
		<-done
		peak = max(peak, base) - base
		cancel()
		ts.Close()
		t.Logf("%s: peak heap growth %.1f MiB (bound %d MiB), err %v", name, float64(peak)/mib, tc.bound/mib, err)
		assert.NotErrorIs(t, err, context.DeadlineExceeded, name)
		assert.LessOrEqual(t, peak, tc.bound, name)
	}
}

func TestHostileErrorMessagesQuoteAShortPrefix(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("9", 1<<20)
	_, err := thethings.ParseTime(huge)
	require.ErrorIs(t, err, thethings.ErrInvalidValue)
	assert.Less(t, len(err.Error()), 200)

	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"date":"`+strings.Repeat("x", 512<<10)+`"}`)
	}))
	_, err = c.ServerTime(testkit.Ctx(t, 0))
	require.ErrorIs(t, err, thethings.ErrInvalidValue)
	assert.Less(t, len(err.Error()), 200)
}

// holder is a caller's struct holding SDK values.
type holder struct {
	Name   string
	Client *thethings.Client
	Value  thethings.Client
	Writer *thethings.Writer
	Err    error
}

func TestHostileTokenInNoPrintedForm(t *testing.T) {
	t.Parallel()
	// A stream whose status frame echoes the token in every field.
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = fmt.Fprintf(w, `{"status":"error %[1]s","code":404,"message":"thing %[1]s not found"}`, sentinelToken)
	}))
	var subErr error
	for _, err := range c.Subscribe(testkit.Ctx(t, 0), thethings.WithReconnect(0)) {
		subErr = err
	}
	var ae *thethings.APIError
	require.ErrorAs(t, subErr, &ae)

	w, err := c.NewWriter()
	require.NoError(t, err)
	// Closed first: fmt reads every field, and a running Writer's change
	// under it (that would be a data race, not a leak).
	require.NoError(t, w.Close(context.Background()))
	h := holder{Name: "h", Client: c, Value: *c, Writer: w, Err: ae}
	subjects := map[string]any{
		"*Client": c, "Client": *c, "holder": h, "*holder": &h, "*Writer": w,
		"*APIError": ae, "APIError": *ae, "[]any": []any{c, *c, w, ae},
	}
	var forms []string
	for name, v := range subjects {
		for _, verb := range []string{"%v", "%+v", "%#v", "%d", "%s", "%q", "%x", "%X", "%T"} {
			forms = append(forms, name+" "+verb+": "+fmt.Sprintf(verb, v))
		}
		var buf strings.Builder
		slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "v", v)
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "v", v)
		log.New(&buf, "", 0).Print(v)
		log.New(&buf, "", 0).Printf("%+v", v)
		forms = append(forms, name+" logs: "+buf.String())
		if b, err := json.Marshal(v); err == nil {
			forms = append(forms, name+" json: "+string(b))
		}
	}
	for _, f := range forms {
		assert.NotContains(t, f, sentinelToken, f)
	}
	assert.Equal(t, sentinelToken, c.ThingToken())
}

func TestHostileCausesKept(t *testing.T) {
	t.Parallel()
	// 200, the start of a body, and then nothing.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `[{"key":"k","value":1,"datetime":"2015-01-30T15:35:33.000Z"},`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(ts.Close)
	ops := map[string]func(ctx context.Context, c *thethings.Client, base string) error{
		"Read": func(ctx context.Context, c *thethings.Client, _ string) error {
			_, err := c.Read(ctx, "k", nil)
			return err
		},
		"Values": func(ctx context.Context, c *thethings.Client, _ string) error {
			for _, err := range c.Values(ctx, "k", nil) {
				if err != nil {
					return err
				}
			}
			return nil
		},
	}
	for k, v := range magicOps {
		ops[k] = v
	}
	for name, op := range ops {
		for _, cause := range []error{context.DeadlineExceeded, context.Canceled} {
			t.Run(name+"/"+cause.Error(), func(t *testing.T) {
				t.Parallel()
				_, c := setup(t, ts.URL)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if cause == context.DeadlineExceeded {
					ctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
				} else {
					ctx, cancel = context.WithCancel(ctx)
					time.AfterFunc(300*time.Millisecond, cancel)
				}
				defer cancel()
				err := op(ctx, c, ts.URL)
				require.Error(t, err)
				assert.ErrorIs(t, err, cause)
				assert.NotContains(t, err.Error(), sentinelToken)
				assert.True(t, strings.HasPrefix(err.Error(), "thethings: "), err.Error())
			})
		}
	}
}

func TestHostileReadBodyCutIsRetried(t *testing.T) {
	t.Parallel()
	body := `[{"key":"k","value":1,"datetime":"2015-01-30T15:35:33.000Z"},{"key":"k","value":2,"datetime":"2015-01-30T15:35:32.000Z"}]`
	var calls atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			// A Content-Length, half of the body, and a reset.
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_, _ = fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:len(body)/2])
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // RST, not FIN
				}
				_ = conn.Close()
			}
			return
		}
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(ts.Close)
	_, c := setup(t, ts.URL)
	page, err := c.Read(testkit.Ctx(t, 0), "k", &thethings.ReadOptions{Limit: 2})
	require.NoError(t, err)
	assert.Len(t, page.Values, 2)
	assert.Equal(t, int32(2), calls.Load())
}

// history is a hostile read server: n values one second apart (from
// 2020) that it
// answers at most perPage at a time, whatever the limit asked; fail, when
// set, decides which requests get a 500.
type history struct {
	n, perPage int
	calls      atomic.Int32
	fail       func(call int32) bool
}

func (h *history) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call := h.calls.Add(1)
	if h.fail != nil && h.fail(call) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"status":"error","message":"boom"}`)
		return
	}
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	end := time.Unix(1<<40, 0)
	if s := r.URL.Query().Get("endDate"); s != "" {
		e, err := thethings.ParseTime(s)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		end = e
	}
	var items []string
	for i := h.n - 1; i >= 0 && len(items) < min(limit, h.perPage); i-- {
		at := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
		if !at.Before(end) {
			continue
		}
		items = append(items, fmt.Sprintf(`{"key":"k","value":%d,"datetime":%q}`, i, at.Format("2006-01-02T15:04:05.000Z")))
	}
	_, _ = io.WriteString(w, "["+strings.Join(items, ",")+"]")
}

func TestHostileValuesFollowShortPages(t *testing.T) {
	t.Parallel()
	h := &history{n: 2500, perPage: 500}
	got := map[int64]int{}
	_, c := setup(t, h)
	for v, err := range c.Values(testkit.Ctx(t, 0), "k", nil) {
		require.NoError(t, err)
		i, _ := v.Int64()
		got[i]++
	}
	assert.Len(t, got, 2500)
	for i, n := range got {
		require.Equal(t, 1, n, "value %d", i)
	}
}

func TestHostileValuesResumeAfterAnError(t *testing.T) {
	t.Parallel()
	h := &history{n: 2500, perPage: 1000}
	h.fail = func(call int32) bool { return call >= 2 }
	_, c := setup(t, h, thethings.WithRetry(thethings.NoRetries))
	var seen []int64
	var failed error
	for v, err := range c.Values(testkit.Ctx(t, 0), "k", nil) {
		if err != nil {
			failed = err
			break
		}
		i, _ := v.Int64()
		seen = append(seen, i)
	}
	var re *thethings.ReadError
	require.ErrorAs(t, failed, &re)
	var ae *thethings.APIError
	assert.ErrorAs(t, failed, &ae)
	require.NotEmpty(t, re.Cursor)
	assert.Len(t, seen, 1000)

	// Another process, a healthy server: the rest, nothing twice.
	_, okc := setup(t, &history{n: 2500, perPage: 1000})
	for v, err := range okc.Values(testkit.Ctx(t, 0), "k", &thethings.ReadOptions{Cursor: re.Cursor}) {
		require.NoError(t, err)
		i, _ := v.Int64()
		seen = append(seen, i)
	}
	require.Len(t, seen, 2500)
	sort.Slice(seen, func(a, b int) bool { return seen[a] < seen[b] })
	for i, v := range seen {
		require.EqualValues(t, i, v)
	}
}

func TestHostileServerTimeOutOfRange(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"date":1e300}`, `{"date":-5}`, `{"date":253402300800}`, `{"date":"0000-01-01T00:00:00Z"}`,
		`{"date":"9999-12-31T23:59:59-01:00"}`,
	} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, body) }))
		_, c := setup(t, ts.URL)
		_, err := c.ServerTime(testkit.Ctx(t, 0))
		ts.Close()
		assert.ErrorIs(t, err, thethings.ErrInvalidValue, body)
	}
}

func TestHostileLocationOffTheGlobe(t *testing.T) {
	t.Parallel()
	for _, v := range []string{`[999,-999]`, `{"type":"Point","coordinates":[0,91]}`, `[181,0]`} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `[{"key":"$geo","value":`+v+`}]`)
		}))
		_, c := setup(t, ts.URL)
		_, err := c.Location(testkit.Ctx(t, 0))
		ts.Close()
		assert.ErrorIs(t, err, thethings.ErrInvalidValue, v)
	}
}

func TestHostileCursorAtTheLastInstant(t *testing.T) {
	t.Parallel()
	var queries []string
	var mu sync.Mutex
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		_, _ = io.WriteString(w, `[{"key":"k","value":1,"datetime":"9999-12-31T23:59:59.999Z"}]`)
	}))
	page, err := c.Read(testkit.Ctx(t, 0), "k", &thethings.ReadOptions{Limit: 1})
	require.NoError(t, err)
	require.Len(t, page.Values, 1)
	require.NotEmpty(t, page.Next)
	page, err = c.Read(testkit.Ctx(t, 0), "k", &thethings.ReadOptions{Limit: 1, Cursor: page.Next})
	require.NoError(t, err)
	assert.Empty(t, page.Values, "the value is not delivered twice")
	assert.Empty(t, page.Next)
}

func TestHostileRetryAfterZeroStillWaits(t *testing.T) {
	t.Parallel()
	for _, ra := range []string{"0", "Mon, 02 Jan 2006 15:04:05 GMT"} {
		var calls atomic.Int32
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) <= 3 {
				w.Header().Set("Retry-After", ra)
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			_, _ = io.WriteString(w, `[]`)
		}))
		_, c := setup(t, ts.URL, thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 3, MinWait: 100 * time.Millisecond, MaxWait: time.Second}))
		start := time.Now()
		_, err := c.Read(testkit.Ctx(t, 0), "k", nil)
		elapsed := time.Since(start)
		ts.Close()
		require.NoError(t, err)
		assert.Equal(t, int32(4), calls.Load())
		// Three waits of at least half of 100, 200 and 400 ms.
		assert.GreaterOrEqual(t, elapsed, 350*time.Millisecond, "Retry-After %q", ra)
	}
}

func TestHostileWriterCloseInsideErrorHandler(t *testing.T) {
	t.Parallel()
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"status":"error","message":"invalid value"}`)
	}))
	var w *thethings.Writer
	returned := make(chan error, 1)
	var once sync.Once
	w, err := c.NewWriter(thethings.WithFlushInterval(10*time.Millisecond), thethings.WithErrorHandler(func(*thethings.WriteError) {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			returned <- w.Close(ctx)
		})
	}))
	require.NoError(t, err)
	require.NoError(t, w.Add(testkit.Ctx(t, 0), thethings.Value{Key: "k", Value: 1}))
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Close called in the error handler hangs past its context")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var we *thethings.WriteError
	assert.True(t, errors.As(w.Close(ctx), &we))
}
