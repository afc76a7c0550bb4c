package thethings_test

// The fault matrix: every operation against every fault the emulator can
// inject, each cell asserting the documented outcome and that the call
// returned once its context's deadline passed. Subscribe's row is with the
// rest of Subscribe's spec, in subscribe_test.go.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/thethingstest"
)

// faultCell is one fault applied to one operation.
type faultCell struct {
	name   string
	faults thethingstest.Faults
	// prime advances the emulator's every-Nth counters by this many
	// writes of another key before the faults are set: with prime 1 and
	// an every-2nd fault, the operation's first request is hit.
	prime       int
	retryWrites bool
	// deadline bounds the call (default 5s); the call must return once
	// it has passed.
	deadline time.Duration
}

// faultEnv is an emulator with the faults of a cell set, and a client for it.
type faultEnv struct {
	srv *thethingstest.Server
	c   *thethings.Client
	ctx context.Context
}

// runCell starts an emulator for the cell, with the values 0..9 under
// "seeded" and cell.prime values under "primer", and runs op under the cell's
// deadline; once the deadline has passed, op must return (a hang fails
// the test instead of the suite).
func runCell(t *testing.T, cell faultCell, op func(env faultEnv) error) (faultEnv, error) {
	t.Helper()
	srv, primer := setup(t, thethingstest.WithActivationCodes(thethingstest.ActivationCode{Code: "code-1"}),
		thethings.WithRetry(thethings.NoRetries))
	seedNumbers(t, srv, "seeded", 10)
	for i := range cell.prime {
		require.NoError(t, primer.Write(context.Background(), intValues("primer", i, 1)))
	}
	srv.SetFaults(cell.faults)
	bc := &bodyCounter{rt: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(bc.rt.CloseIdleConnections)
	policy := fastRetryPolicy
	policy.RetryWrites = cell.retryWrites
	_, c := setup(t, srv.URL(), thethings.WithHTTPClient(bc.httpClient()), thethings.WithStreamHTTPClient(&http.Client{Transport: bc}),
		thethings.WithRetry(policy))
	deadline := cell.deadline
	if deadline == 0 {
		deadline = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	env := faultEnv{srv: srv, c: c, ctx: ctx}
	var err error
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		err = op(env)
	}()
	select {
	case <-returned:
	case <-ctx.Done():
		if !testkit.Eventually(t, "the call returns once its deadline has passed", func() bool {
			select {
			case <-returned:
				return true
			default:
				return false
			}
		}) {
			t.FailNow()
		}
	}
	assert.Zero(t, bc.open(), "response bodies left open")
	if err != nil {
		assert.NotContains(t, err.Error(), sentinelToken)
	}
	return env, err
}

// writeFate is the expected fate of the values of a write.
type writeFate struct {
	unknown    int   // values in WriteErrors with Unknown set
	notWritten int   // values in WriteErrors without it
	unknownAt  []int // allowed store counts of each Unknown value
	okStored   int   // store count of each value written without error (default 1)
	is         error // the error must match it (with errors.Is), when set
	// cut: when a deadline may cut a request in flight, that request's
	// values (cut of the notWritten ones) may be unknown instead.
	cut int
}

// walkWriteErrors returns the *WriteErrors in err's tree, and the other
// errors at its leaves.
func walkWriteErrors(err error) (wes []*thethings.WriteError, others []error) {
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) {
		case nil:
		case *thethings.WriteError:
			wes = append(wes, x)
		case interface{ Unwrap() []error }:
			for _, y := range x.Unwrap() {
				walk(y)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		default:
			others = append(others, x)
		}
	}
	walk(err)
	return wes, others
}

// checkWriteFate accounts for every one of n values numbered 0..n-1 and
// written to key "k": each is written (stored okStored times), or in exactly
// one WriteError; not-written values are not stored; unknown ones are
// stored as many times as the cell allows.
func checkWriteFate(t *testing.T, srv *thethingstest.Server, n int, err error, want writeFate) {
	t.Helper()
	stored := map[int]int{}
	for _, i := range ints(t, srv.Stored(sentinelToken, "k")) {
		stored[i]++
	}
	fate := map[int]string{}
	wes, _ := walkWriteErrors(err)
	for _, we := range wes {
		for _, v := range we.Values {
			i, ok := v.Value.(int)
			require.True(t, ok, "value %#v", v.Value)
			require.NotContains(t, fate, i, "value %d in two WriteErrors", i)
			fate[i] = map[bool]string{true: "unknown", false: "not written"}[we.Unknown]
		}
		if we.Unknown {
			assert.ErrorIs(t, we, thethings.ErrOutcomeUnknown)
		}
	}
	if want.unknown+want.notWritten > 0 {
		require.Error(t, err)
	} else {
		require.NoError(t, err)
	}
	if want.is != nil {
		assert.ErrorIs(t, err, want.is)
	}
	okStored := want.okStored
	if okStored == 0 {
		okStored = 1
	}
	counts := map[string]int{}
	for i := range n {
		f := fate[i]
		counts[f]++
		switch f {
		case "":
			assert.Equal(t, okStored, stored[i], "value %d written without error", i)
		case "not written":
			assert.Zero(t, stored[i], "value %d reported not written", i)
		case "unknown":
			assert.Contains(t, want.unknownAt, stored[i], "value %d of unknown fate stored %d times", i, stored[i])
		}
	}
	if want.cut > 0 && counts["unknown"] == want.unknown+want.cut {
		want.unknown += want.cut
		want.notWritten -= want.cut
	}
	assert.Equal(t, want.unknown, counts["unknown"], "values of unknown fate (error: %v)", err)
	assert.Equal(t, want.notWritten, counts["not written"], "values not written (error: %v)", err)
	assert.Len(t, fate, want.unknown+want.notWritten, "values reported that were never written")
}

func TestFaultMatrixWrite(t *testing.T) {
	t.Parallel()
	// 150 values: two requests of 100 and 50.
	const n = 150
	for _, tc := range []struct {
		faultCell
		want     writeFate
		requests int // write requests the emulator saw, the primer writes excluded
	}{
		{faultCell: faultCell{name: "no fault"}, requests: 2},
		{faultCell: faultCell{name: "503 every 2nd: retried", faults: thethingstest.Faults{Every503: 2}, prime: 1}, requests: 4},
		{faultCell: faultCell{name: "503 always: not written", faults: thethingstest.Faults{Every503: 1}},
			want: writeFate{notWritten: n}, requests: 4},
		{faultCell: faultCell{name: "429 every 2nd: retried", faults: thethingstest.Faults{Every429: 2}, prime: 1}, requests: 4},
		{faultCell: faultCell{name: "429 always: not written", faults: thethingstest.Faults{Every429: 1}},
			want: writeFate{notWritten: n, is: thethings.ErrRateLimited}, requests: 4},
		// Dropped before the body was read: nothing is stored, but the
		// client cannot tell that from a drop after storing.
		{faultCell: faultCell{name: "drop before body: unknown", faults: thethingstest.Faults{DropBeforeBodyEvery: 2}, prime: 1},
			want: writeFate{unknown: 100, notWritten: 50, unknownAt: []int{0}, is: thethings.ErrOutcomeUnknown}, requests: 1},
		{faultCell: faultCell{name: "drop before body, RetryWrites: retried", faults: thethingstest.Faults{DropBeforeBodyEvery: 2}, prime: 1, retryWrites: true},
			requests: 4},
		{faultCell: faultCell{name: "drop after body unstored: unknown", faults: thethingstest.Faults{DropEvery: 2}, prime: 1},
			want: writeFate{unknown: 100, notWritten: 50, unknownAt: []int{0}, is: thethings.ErrOutcomeUnknown}, requests: 1},
		{faultCell: faultCell{name: "drop after body stored: unknown", faults: thethingstest.Faults{DropEvery: 2, DropStores: true}, prime: 1},
			want: writeFate{unknown: 100, notWritten: 50, unknownAt: []int{1}, is: thethings.ErrOutcomeUnknown}, requests: 1},
		{faultCell: faultCell{name: "drop after body unstored, RetryWrites: retried", faults: thethingstest.Faults{DropEvery: 2}, prime: 1, retryWrites: true},
			requests: 4},
		// RetryWrites trades loss for duplicates: each dropped-but-stored
		// request is stored again by its retry.
		{faultCell: faultCell{name: "drop after body stored, RetryWrites: duplicated", faults: thethingstest.Faults{DropEvery: 2, DropStores: true}, prime: 1, retryWrites: true},
			want: writeFate{okStored: 2}, requests: 4},
		{faultCell: faultCell{name: "latency past deadline: unknown", faults: thethingstest.Faults{Latency: 3 * time.Second}, deadline: 150 * time.Millisecond},
			want: writeFate{unknown: 100, notWritten: 50, unknownAt: []int{0, 1}, is: context.DeadlineExceeded}, requests: 1},
		{faultCell: faultCell{name: "latency within deadline", faults: thethingstest.Faults{Latency: 20 * time.Millisecond}}, requests: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, err := runCell(t, tc.faultCell, func(env faultEnv) error {
				return env.c.Write(env.ctx, intValues("k", 0, n))
			})
			checkWriteFate(t, env.srv, n, err, tc.want)
			assert.Equal(t, tc.requests, env.srv.Requests(thethingstest.RouteWrite)-tc.prime, "write requests")
		})
	}
}

func TestFaultMatrixWriter(t *testing.T) {
	t.Parallel()
	// 30 values in batches of 10: three requests, one after the other.
	const n = 30
	for _, tc := range []struct {
		faultCell
		want writeFate
	}{
		{faultCell: faultCell{name: "no fault"}},
		{faultCell: faultCell{name: "503 every 2nd: retried", faults: thethingstest.Faults{Every503: 2}, prime: 1}},
		// Refused for a passing reason: the values stay buffered and are
		// retried until Close's deadline, which reports them unsent; if the
		// deadline cuts an attempt in flight, that batch is unknown (and
		// was not stored: every answer is a 503).
		{faultCell: faultCell{name: "503 always: not written at Close", faults: thethingstest.Faults{Every503: 1}, deadline: 300 * time.Millisecond},
			want: writeFate{notWritten: n, cut: 10, unknownAt: []int{0}, is: context.DeadlineExceeded}},
		{faultCell: faultCell{name: "429 every 2nd: retried", faults: thethingstest.Faults{Every429: 2}, prime: 1}},
		{faultCell: faultCell{name: "429 always: not written at Close", faults: thethingstest.Faults{Every429: 1}, deadline: 300 * time.Millisecond},
			want: writeFate{notWritten: n, cut: 10, unknownAt: []int{0}, is: context.DeadlineExceeded}},
		// Batches 1 and 3 meet the drop, batch 2 goes through.
		{faultCell: faultCell{name: "drop before body: unknown", faults: thethingstest.Faults{DropBeforeBodyEvery: 2}, prime: 1},
			want: writeFate{unknown: 20, unknownAt: []int{0}, is: thethings.ErrOutcomeUnknown}},
		{faultCell: faultCell{name: "drop after body unstored: unknown", faults: thethingstest.Faults{DropEvery: 2}, prime: 1},
			want: writeFate{unknown: 20, unknownAt: []int{0}, is: thethings.ErrOutcomeUnknown}},
		{faultCell: faultCell{name: "drop after body stored: unknown", faults: thethingstest.Faults{DropEvery: 2, DropStores: true}, prime: 1},
			want: writeFate{unknown: 20, unknownAt: []int{1}, is: thethings.ErrOutcomeUnknown}},
		{faultCell: faultCell{name: "drop after body unstored, RetryWrites: retried", faults: thethingstest.Faults{DropEvery: 2}, prime: 1, retryWrites: true}},
		// Close's deadline cuts the first request in flight: its batch is
		// unknown, the other two were never sent.
		{faultCell: faultCell{name: "latency past Close deadline", faults: thethingstest.Faults{Latency: 3 * time.Second}, deadline: 150 * time.Millisecond},
			want: writeFate{unknown: 10, notWritten: 20, unknownAt: []int{0, 1}, is: context.DeadlineExceeded}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var handled []*thethings.WriteError
			env, err := runCell(t, tc.faultCell, func(env faultEnv) error {
				w := mustWriter(t, env.c, thethings.WithServerTimestamps(), thethings.WithBatchSize(10), thethings.WithFlushInterval(0),
					thethings.WithErrorHandler(func(we *thethings.WriteError) { handled = append(handled, we) }))
				if err := w.Add(env.ctx, intValues("k", 0, n)...); err != nil {
					return errors.Join(err, w.Close(env.ctx))
				}
				return w.Close(env.ctx)
			})
			checkWriteFate(t, env.srv, n, err, tc.want)
			// The error handler saw every request-level failure Close returned.
			for _, we := range handled {
				wes, _ := walkWriteErrors(err)
				assert.True(t, slices.Contains(wes, we), "handled error %v not returned by Close", we)
			}
		})
	}
}

// readCells are the faults for the read operations, with the error each
// must end in (nil: retried as needed and succeeded).
var readCells = []struct {
	faultCell
	is error
}{
	{faultCell: faultCell{name: "no fault"}},
	{faultCell: faultCell{name: "503 every 2nd: retried", faults: thethingstest.Faults{Every503: 2}, prime: 1}},
	{faultCell: faultCell{name: "503 always", faults: thethingstest.Faults{Every503: 1}}, is: &thethings.APIError{StatusCode: 503}},
	{faultCell: faultCell{name: "429 every 2nd: retried", faults: thethingstest.Faults{Every429: 2}, prime: 1}},
	{faultCell: faultCell{name: "429 always", faults: thethingstest.Faults{Every429: 1}}, is: thethings.ErrRateLimited},
	{faultCell: faultCell{name: "drop before body: retried", faults: thethingstest.Faults{DropBeforeBodyEvery: 2}, prime: 1}},
	{faultCell: faultCell{name: "drop every request", faults: thethingstest.Faults{DropBeforeBodyEvery: 1}}, is: errAnyTransport},
	{faultCell: faultCell{name: "latency past deadline", faults: thethingstest.Faults{Latency: 3 * time.Second}, deadline: 150 * time.Millisecond},
		is: context.DeadlineExceeded},
	{faultCell: faultCell{name: "latency within deadline", faults: thethingstest.Faults{Latency: 20 * time.Millisecond}}},
}

// errAnyTransport stands for any error without an HTTP answer.
var errAnyTransport = errors.New("any failure without an answer")

func checkReadError(t *testing.T, err, is error) {
	t.Helper()
	var ae *thethings.APIError
	switch want := is.(type) {
	case nil:
		require.NoError(t, err)
	case *thethings.APIError:
		require.ErrorAs(t, err, &ae)
		assert.Equal(t, want.StatusCode, ae.StatusCode)
	default:
		require.Error(t, err)
		if is == errAnyTransport {
			assert.False(t, errors.As(err, &ae), "an HTTP answer: %v", err)
		} else {
			assert.ErrorIs(t, err, is)
		}
	}
}

func TestFaultMatrixRead(t *testing.T) {
	t.Parallel()
	for _, tc := range readCells {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var page *thethings.Page
			_, err := runCell(t, tc.faultCell, func(env faultEnv) error {
				var err error
				page, err = env.c.Read(env.ctx, "seeded", &thethings.ReadOptions{Limit: 5})
				return err
			})
			checkReadError(t, err, tc.is)
			if err == nil {
				require.Len(t, page.Values, 5)
				for i, v := range page.Values {
					assert.Equal(t, json.Number(strconv.Itoa(9-i)), v.Value)
				}
				assert.NotEmpty(t, page.Next)
			}
		})
	}
}

func TestFaultMatrixValues(t *testing.T) {
	t.Parallel()
	for _, tc := range readCells {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			errs := 0
			env, err := runCell(t, tc.faultCell, func(env faultEnv) error {
				var last error
				for v, err := range env.c.Values(env.ctx, "seeded", &thethings.ReadOptions{Limit: 4}) {
					if err != nil {
						errs++
						last = err
						continue
					}
					got = append(got, string(v.Value.(json.Number)))
				}
				return last
			})
			checkReadError(t, err, tc.is)
			if err == nil {
				assert.Equal(t, []string{"9", "8", "7", "6", "5", "4", "3", "2", "1", "0"}, got, "every value once, newest first")
				assert.GreaterOrEqual(t, env.srv.Requests(thethingstest.RouteRead), 3)
			} else {
				assert.Equal(t, 1, errs, "the error is yielded once")
			}
		})
	}
}

func TestFaultMatrixActivate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		faultCell
		is error
		// codeLeft: the emulator did not use the code up.
		codeLeft bool
	}{
		{faultCell: faultCell{name: "no fault"}},
		// Activation is never repeated once sent, even on a 503 with
		// Retry-After or a 429: the caller decides.
		{faultCell: faultCell{name: "503: not retried", faults: thethingstest.Faults{Every503: 2}, prime: 1}, is: &thethings.APIError{StatusCode: 503}, codeLeft: true},
		{faultCell: faultCell{name: "429: not retried", faults: thethingstest.Faults{Every429: 1}}, is: thethings.ErrRateLimited, codeLeft: true},
		{faultCell: faultCell{name: "drop before body: unknown", faults: thethingstest.Faults{DropBeforeBodyEvery: 2}, prime: 1}, is: thethings.ErrOutcomeUnknown, codeLeft: true},
		{faultCell: faultCell{name: "latency past deadline: unknown", faults: thethingstest.Faults{Latency: 3 * time.Second}, deadline: 150 * time.Millisecond},
			is: thethings.ErrOutcomeUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c *thethings.Client
			env, err := runCell(t, tc.faultCell, func(env faultEnv) error {
				var err error
				c, err = thethings.Activate(env.ctx, "code-1", "", thethings.WithBaseURL(env.srv.URL()), fastRetry)
				return err
			})
			assert.Equal(t, 1, env.srv.Requests(thethingstest.RouteActivate), "activation is sent once")
			if tc.is == nil {
				require.NoError(t, err)
				assert.NotEmpty(t, c.ThingToken())
				return
			}
			checkReadError(t, err, tc.is)
			if tc.is == context.DeadlineExceeded || tc.deadline != 0 {
				assert.ErrorIs(t, err, context.DeadlineExceeded)
			}
			if tc.codeLeft {
				// Nothing was activated: the code works once the platform does.
				env.srv.SetFaults(thethingstest.Faults{})
				_, err := thethings.Activate(context.Background(), "code-1", "", thethings.WithBaseURL(env.srv.URL()))
				assert.NoError(t, err)
			}
		})
	}
}
