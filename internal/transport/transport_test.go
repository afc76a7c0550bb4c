package transport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// answer is an answer of status code, with a Retry-After header unless
// retryAfter is empty.
func answer(code int, retryAfter string) *http.Response {
	h := http.Header{}
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	return &http.Response{StatusCode: code, Header: h, Body: http.NoBody}
}

// TestDecide is the retry table: request kind x outcome -> (retry, maybe processed).
func TestDecide(t *testing.T) {
	t.Parallel()
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}
	type want struct{ retry, maybe bool }
	cases := []struct {
		name    string
		resp    *http.Response
		err     error
		wrote   bool
		read    want
		write   want
		writeRW want // with RetryWrites
		once    want
	}{
		{"dial failure", nil, dial, false, want{true, false}, want{true, false}, want{true, false}, want{true, false}},
		{"EOF after send", nil, io.EOF, true, want{true, true}, want{false, true}, want{true, true}, want{false, true}},
		{"reset after send", nil, reset, true, want{true, true}, want{false, true}, want{true, true}, want{false, true}},
		{"unexpected EOF before send", nil, io.ErrUnexpectedEOF, false, want{true, false}, want{true, false}, want{true, false}, want{true, false}},
		{"ctx cancelled after send", nil, context.Canceled, true, want{false, true}, want{false, true}, want{false, true}, want{false, true}},
		{"deadline before send", nil, fmt.Errorf("x: %w", context.DeadlineExceeded), false, want{false, false}, want{false, false}, want{false, false}, want{false, false}},
		{"bad certificate", nil, x509.UnknownAuthorityError{}, true, want{false, false}, want{false, false}, want{false, false}, want{false, false}},
		{"bad scheme", nil, errors.New(`unsupported protocol scheme "ftp"`), false, want{false, false}, want{false, false}, want{false, false}, want{false, false}},
		{"200", answer(200, ""), nil, true, want{false, false}, want{false, false}, want{false, false}, want{false, false}},
		{"201", answer(201, ""), nil, true, want{false, false}, want{false, false}, want{false, false}, want{false, false}},
		{"400", answer(400, ""), nil, true, want{false, false}, want{false, false}, want{false, false}, want{false, false}},
		{"401", answer(401, ""), nil, true, want{false, false}, want{false, false}, want{false, false}, want{false, false}},
		{"404", answer(404, ""), nil, true, want{false, false}, want{false, false}, want{false, false}, want{false, false}},
		{"429", answer(429, ""), nil, true, want{true, false}, want{true, false}, want{true, false}, want{false, false}},
		{"429 Retry-After", answer(429, "2"), nil, true, want{true, false}, want{true, false}, want{true, false}, want{false, false}},
		{"500", answer(500, ""), nil, true, want{true, true}, want{false, true}, want{true, true}, want{false, true}},
		{"501", answer(501, ""), nil, true, want{false, false}, want{false, false}, want{false, false}, want{false, false}},
		{"502", answer(502, ""), nil, true, want{true, true}, want{false, true}, want{true, true}, want{false, true}},
		{"503", answer(503, ""), nil, true, want{true, true}, want{false, true}, want{true, true}, want{false, true}},
		{"503 Retry-After", answer(503, "1"), nil, true, want{true, false}, want{true, false}, want{true, false}, want{false, false}},
		{"504", answer(504, ""), nil, true, want{true, true}, want{false, true}, want{true, true}, want{false, true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			check := func(label string, kind Kind, rw bool, w want) {
				r, m := Decide(kind, rw, tc.resp, tc.err, tc.wrote)
				assert.Equal(t, w, want{r, m}, label)
			}
			check("read", Idempotent, false, tc.read)
			check("write", Write, false, tc.write)
			check("write+RetryWrites", Write, true, tc.writeRW)
			check("once", Once, false, tc.once)
			check("once+RetryWrites", Once, true, tc.once)
		})
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"1", time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"-1", 0, false},
		{"abc", 0, false},
		{"", 0, false},
		{"99999999999", 24 * time.Hour, true},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{now.Add(90 * time.Second).Format(time.RFC850), 90 * time.Second, true},
		{now.Add(5 * time.Second).Format(time.ANSIC), 5 * time.Second, true},
	}
	for _, tc := range cases {
		got, ok := RetryAfter(tc.in, now)
		assert.Equal(t, tc.ok, ok, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	p := Policy{MinWait: 100 * time.Millisecond, MaxWait: time.Second}
	for n := range 10 {
		base := min(p.MinWait<<n, p.MaxWait)
		for range 50 {
			d := Wait(p, n, 0)
			assert.GreaterOrEqual(t, d, base/2, "attempt %d", n)
			assert.LessOrEqual(t, d, base, "attempt %d", n)
		}
	}
	wait := func(n int, resp *http.Response) time.Duration { return Wait(p, n, RetryAfterOf(resp, time.Now())) }
	// Retry-After is honoured, and clamped to MaxWait.
	assert.Equal(t, time.Second, wait(0, answer(429, "1")))
	assert.Equal(t, time.Second, wait(0, answer(503, "3600")))
	assert.Zero(t, RetryAfterOf(answer(500, "7"), time.Now()), "only 429 and 503 carry one")
	// Without a usable Retry-After (absent, 0, unparsable) the exponential wait applies.
	for _, ra := range []string{"", "0", "soon", "Mon, 02 Jan 2006 15:04:05 GMT"} {
		d := wait(0, answer(429, ra))
		assert.True(t, d >= 50*time.Millisecond && d <= 100*time.Millisecond, "%q: %s", ra, d)
	}
	assert.Equal(t, time.Duration(0), Wait(Policy{}, 4, 0))
}

// scripted is an in-memory RoundTripper that fails every call with err,
// if set, or gives the answers of steps in turn, the last one again and
// again, each with a body of its own; inside a synctest bubble its waits
// run on the fake clock.
type scripted struct {
	steps []*http.Response
	err   error
	calls int
	at    []time.Time
}

func (s *scripted) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	s.at = append(s.at, time.Now())
	s.calls++
	if s.err != nil {
		return nil, s.err
	}
	resp := *s.steps[min(s.calls, len(s.steps))-1]
	resp.Body = io.NopCloser(strings.NewReader(`{"status":"error"}`))
	resp.Request = r
	return &resp, nil
}

// errStatus is what do's handler makes of an answer other than 2xx.
var errStatus = errors.New("not 2xx")

// do is Do with a handler that accepts a 2xx answer and refuses the
// others; status is the last answer's status.
func do(ctx context.Context, tr *Transport, r *Request) (status int, maybe bool, err error) {
	maybe, err = tr.Do(ctx, r, func(resp *http.Response) error {
		status = resp.StatusCode
		_, _ = io.Copy(io.Discard, resp.Body)
		if status/100 != 2 {
			return errStatus
		}
		return nil
	})
	return status, maybe, err
}

func TestDoWaitsInFakeTime(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rt := &scripted{steps: []*http.Response{answer(503, ""), answer(429, "7"), answer(500, ""), answer(200, "")}}
		tr := New(&http.Client{Transport: rt}, Policy{MaxRetries: 5, MinWait: time.Second, MaxWait: 5 * time.Second}, nil, nil)
		start := time.Now()
		status, _, err := do(context.Background(), tr, &Request{Kind: Idempotent, Method: "GET", URL: "http://h/v2/x", Path: "/v2/x"})
		require.NoError(t, err)
		assert.Equal(t, 200, status)
		assert.Equal(t, 4, rt.calls)
		require.Len(t, rt.at, 4)
		w1 := rt.at[1].Sub(rt.at[0])
		w2 := rt.at[2].Sub(rt.at[1])
		w3 := rt.at[3].Sub(rt.at[2])
		assert.True(t, w1 >= 500*time.Millisecond && w1 <= time.Second, "first wait %s", w1)
		assert.Equal(t, 5*time.Second, w2, "Retry-After 7s clamped to MaxWait")
		assert.True(t, w3 >= 2*time.Second && w3 <= 4*time.Second, "third wait %s", w3)
		assert.Equal(t, w1+w2+w3, time.Since(start))
	})
}

func TestDoGivesUpBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rt := &scripted{steps: []*http.Response{answer(429, "4")}}
		tr := New(&http.Client{Transport: rt}, Policy{MaxRetries: 5, MinWait: time.Second, MaxWait: 10 * time.Second}, nil, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		status, _, err := do(ctx, tr, &Request{Kind: Write, Method: "POST", URL: "http://h/v2/x", Path: "/v2/x", Body: []byte(`{}`)})
		require.ErrorIs(t, err, errStatus, "the last answer, not a context error")
		assert.Equal(t, 429, status, "the last answer, not a context error")
		assert.Equal(t, 1, rt.calls)
		assert.Zero(t, time.Since(start), "no wait that the deadline would cut")
	})
}

func TestDoCancelDuringWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		rt := &scripted{steps: []*http.Response{answer(503, "")}}
		tr := New(&http.Client{Transport: rt}, Policy{MaxRetries: 5, MinWait: 10 * time.Second, MaxWait: 10 * time.Second}, nil, nil)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		start := time.Now()
		_, _, err := do(ctx, tr, &Request{Kind: Idempotent, Method: "GET", URL: "http://h/v2/x", Path: "/v2/x"})
		require.Error(t, err)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, time.Second, time.Since(start), "returns as soon as the context ends")
		assert.Equal(t, 1, rt.calls)
		var te *Error
		require.ErrorAs(t, err, &te)
		assert.True(t, te.MaybeSent, "a 503 without Retry-After may have been processed")
	})
}

func TestDoWriteNotRetriedWhenAmbiguous(t *testing.T) {
	t.Parallel()
	rt := &scripted{steps: []*http.Response{answer(500, ""), answer(201, "")}}
	tr := New(&http.Client{Transport: rt}, Policy{MaxRetries: 3}, nil, nil)
	code, maybe, err := do(context.Background(), tr, &Request{Kind: Write, Method: "POST", URL: "http://h/v2/x", Path: "/v2/x", Body: []byte(`{}`)})
	require.ErrorIs(t, err, errStatus)
	assert.Equal(t, 500, code)
	assert.Equal(t, 1, rt.calls)
	assert.True(t, maybe)

	rt = &scripted{steps: []*http.Response{answer(500, ""), answer(201, "")}}
	tr = New(&http.Client{Transport: rt}, Policy{MaxRetries: 3, RetryWrites: true}, nil, nil)
	code, maybe, err = do(context.Background(), tr, &Request{Kind: Write, Method: "POST", URL: "http://h/v2/x", Path: "/v2/x", Body: []byte(`{}`)})
	require.NoError(t, err)
	assert.Equal(t, 201, code)
	assert.Equal(t, 2, rt.calls)
	assert.True(t, maybe, "the first attempt may have stored the values")
}

func TestErrorIsRedacted(t *testing.T) {
	t.Parallel()
	const secret = "SECRET-TOKEN"
	url := "http://h/v2/things/" + secret
	rt := &scripted{err: fmt.Errorf("dial to %s failed: %w", url, &net.OpError{Op: "dial", Err: errors.New("refused")})}
	tr := New(&http.Client{Transport: rt}, Policy{MaxRetries: 1}, nil, func(s string) string { return strings.ReplaceAll(s, secret, "***") })
	_, _, err := do(context.Background(), tr, &Request{Kind: Idempotent, Method: "GET", URL: url, Path: "/v2/things/***"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), secret)
	assert.NotContains(t, fmt.Sprintf("%+v", err), secret)
	assert.Contains(t, err.Error(), "/v2/things/***")
	assert.Equal(t, 2, rt.calls)
}

func TestClassify(t *testing.T) {
	sent := &Error{Err: errors.New("connection reset"), MaybeSent: true}
	notSent := &Error{Err: errors.New("connection refused")}
	cases := []struct {
		kind       Kind
		status     int
		retryAfter bool
		err        error
		want       Outcome
	}{
		{Write, 201, false, nil, Stored},
		{Verified, 200, false, nil, Stored},
		{Write, 0, false, notSent, NotStored},
		{Verified, 0, false, notSent, NotStored},
		{Write, 0, false, sent, Ambiguous},
		{Verified, 429, true, nil, NotStored},
		{Write, 503, true, nil, NotStored},
		{Verified, 503, true, nil, Ambiguous}, // a proxy may say so after the store
		{Write, 503, false, nil, Ambiguous},
		{Write, 500, false, nil, Ambiguous},
		{Write, 502, false, nil, Ambiguous},
		{Write, 504, false, nil, Ambiguous},
		{Write, 501, false, nil, Permanent},
		{Write, 400, false, nil, Permanent},
		{Write, 401, false, nil, Permanent},
		{Write, 404, false, nil, Permanent},
		{Write, 408, false, nil, NotStored},
		{Verified, 408, false, nil, NotStored},
		{Write, 0, false, &Error{Err: errors.New(`unsupported protocol scheme "ftp"`)}, Permanent},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, Classify(c.kind, c.status, c.retryAfter, c.err), "%v %d retryAfter=%v %v", c.kind, c.status, c.retryAfter, c.err)
	}
}

// A body cut mid-way is a failed attempt: a read is sent again, activation
// is not and may have been processed.
func TestDoReadCutBody(t *testing.T) {
	// The first cuts answers promise 10 bytes, send 3 and close; the
	// answers after them are whole.
	var cuts, hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "10")
		if hits.Add(1) <= cuts.Load() {
			_, _ = io.WriteString(w, "012")
			return
		}
		_, _ = io.WriteString(w, "0123456789")
	}))
	t.Cleanup(srv.Close)
	read := func(tr *Transport, kind Kind) (string, bool, error) {
		var got []byte
		maybe, err := tr.Do(context.Background(), &Request{Kind: kind, Method: "GET", URL: srv.URL + "/p", Path: "/p"}, func(resp *http.Response) error {
			var err error
			got, err = io.ReadAll(resp.Body)
			return err
		})
		return string(got), maybe, err
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(hc.CloseIdleConnections)
	tr := New(hc, Policy{MaxRetries: 2}, nil, nil)

	cuts.Store(2)
	got, _, err := read(tr, Idempotent)
	require.NoError(t, err)
	assert.Equal(t, "0123456789", got)
	assert.Equal(t, int32(3), hits.Load())

	cuts.Store(3)
	hits.Store(0)
	_, _, err = read(tr, Idempotent)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "retries spent: the last cut is the error")
	assert.Equal(t, int32(3), hits.Load())

	cuts.Store(1)
	hits.Store(0)
	_, maybe, err := read(tr, Once)
	assert.Error(t, err)
	assert.Equal(t, int32(1), hits.Load())
	assert.True(t, maybe)
}

// A subscription reconnects after what a read retries, and after 408.
func TestDecideStream(t *testing.T) {
	for status, want := range map[int]bool{200: false, 302: false, 400: false, 401: false, 404: false, 408: true, 429: true, 500: true, 501: false, 502: true, 503: true} {
		retry, _ := DecideAnswer(Stream, false, status, false)
		assert.Equal(t, want, retry, "status %d", status)
	}
}

// The loop's budget starts over on Reset, its backoff only on Lived.
func TestLoopResetAndLived(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := Policy{MinWait: time.Second, MaxWait: 64 * time.Second}
		var at []time.Time
		steps := []Step{
			{Retry: true}, {Retry: true, Reset: true}, {Retry: true, Reset: true},
			{Retry: true, Reset: true, Lived: true}, {Retry: true}, {Retry: true}, {Err: errStatus, Retry: true},
		}
		loop := Loop{Policy: p, Max: 3}
		last, end := loop.Run(t.Context(), func(context.Context) Step {
			at = append(at, time.Now())
			return steps[len(at)-1]
		})
		assert.Equal(t, Spent, end, "three retries in a row after the last Reset")
		assert.ErrorIs(t, last.Err, errStatus)
		require.Len(t, at, 7)
		// Waits: n=0,1,2 (Reset keeps the backoff), then 0 (Lived), 1, 2.
		for i, n := range []int{0, 1, 2, 0, 1, 2} {
			base := p.MinWait << n
			gap := at[i+1].Sub(at[i])
			assert.True(t, gap >= base/2 && gap <= base, "wait %d is %s, want within [%s, %s]", i+1, gap, base/2, base)
		}
	})
}

// The loop stops at once when ctx ends during a wait.
func TestLoopCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		loop := Loop{Policy: Policy{MinWait: time.Hour, MaxWait: time.Hour}, Max: -1}
		start := time.Now()
		_, end := loop.Run(ctx, func(context.Context) Step { return Step{Retry: true} })
		assert.Equal(t, Cut, end)
		assert.Equal(t, 3*time.Second, time.Since(start))
	})
}

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := Sleep(context.Background(), 3*time.Second); err != nil || time.Since(start) != 3*time.Second {
			t.Fatalf("Sleep(3s) = %v after %v", err, time.Since(start))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := Sleep(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 4*time.Second {
			t.Fatalf("Sleep past the deadline = %v after %v", err, time.Since(start))
		}
		if err := Sleep(ctx, 0); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Sleep(0) with an ended context = %v", err)
		}
	})
}

// A write whose context ends while its connection is still being dialled
// never left the process: its outcome is known (not stored), unlike one cut
// after it was written.
func TestDoCutWhileDiallingWasNotSent(t *testing.T) {
	t.Parallel()
	dialing, release, dialed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	tp := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		defer close(dialed)
		close(dialing)
		<-release // net/http may go on dialling for its pool after the request gave up
		return nil, errors.New("no connection")
	}}
	t.Cleanup(func() { close(release); <-dialed; tp.CloseIdleConnections() })
	hc := &http.Client{Transport: tp}
	tr := New(hc, Policy{MaxRetries: 3}, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-dialing; cancel() }()
	maybe, err := tr.Do(ctx, &Request{Kind: Write, Method: "POST", URL: "http://127.0.0.1:1/v2/x", Path: "/v2/x", Body: []byte(`{}`)}, func(*http.Response) error { return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, maybe, "nothing was written")
	var te *Error
	require.ErrorAs(t, err, &te)
	assert.False(t, te.MaybeSent)
}
