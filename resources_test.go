package thethings_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/rand"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

var readsBase = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// seedNumbers stores n values i = 0..n-1 under key, one second apart from readsBase.
func seedNumbers(t testing.TB, srv *thethingstest.Server, key string, n int) {
	t.Helper()
	recs := make([]thethingstest.Record, n)
	for i := range recs {
		recs[i] = thethingstest.Record{Value: json.RawMessage(fmt.Sprint(i)), Datetime: readsBase.Add(time.Duration(i) * time.Second)}
	}
	require.NoError(t, srv.Seed(sentinelToken, key, recs...))
}

// canon is values in a comparable form, sorted: millisecond, canonical
// JSON, geo. The values are a slice, a Values sequence (which must yield
// no error), or stored records.
func canon(t testing.TB, values any) []string {
	t.Helper()
	var vals []thethings.Value
	switch values := values.(type) {
	case []thethings.Value:
		vals = values
	case iter.Seq2[thethings.Value, error]:
		for v, err := range values {
			require.NoError(t, err)
			vals = append(vals, v)
		}
	case []thethingstest.Record:
		for _, r := range values {
			v := thethings.Value{Value: r.Value, Datetime: r.Datetime}
			if r.Geo != nil {
				v.Geo = &thethings.Geo{Lat: r.Geo.Lat, Long: r.Geo.Long}
			}
			vals = append(vals, v)
		}
	default:
		t.Fatalf("canon of %T", values)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		raw, ok := v.Value.(json.RawMessage)
		if !ok {
			var err error
			raw, err = json.Marshal(v.Value)
			require.NoError(t, err)
		}
		d := json.NewDecoder(strings.NewReader(string(raw)))
		d.UseNumber()
		var x any
		require.NoError(t, d.Decode(&x))
		b, err := json.Marshal(x)
		require.NoError(t, err)
		g := ""
		if v.Geo != nil {
			g = fmt.Sprintf("%v,%v", v.Geo.Lat, v.Geo.Long)
		}
		out[i] = fmt.Sprintf("%d|%s|%s", v.Datetime.UnixMilli(), b, g)
	}
	slices.Sort(out)
	return out
}

func TestValuesSmoke(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedNumbers(t, srv, "temp", 2500)
	n := 0
	for v, err := range c.Values(context.Background(), "temp", nil) {
		require.NoError(t, err)
		i, err := v.Int64()
		require.NoError(t, err)
		require.EqualValues(t, 2499-n, i)
		require.Equal(t, "temp", v.Key)
		require.Equal(t, time.UTC, v.Datetime.Location())
		require.True(t, v.Datetime.Equal(readsBase.Add(time.Duration(i)*time.Second)))
		require.Nil(t, v.Geo)
		n++
	}
	assert.Equal(t, 2500, n)
	// Three pages, and one that brings nothing new: only that proves the
	// end of history (a short page does not).
	assert.Equal(t, 4, srv.Requests(thethingstest.RouteRead))
}

// TestValuesExactlyOnceProperty checks, in both endDate modes, that Values
// and a chain of Reads deliver exactly the stored multiset of a random
// window, with ties of up to 999 values at one millisecond.
func TestValuesExactlyOnceProperty(t *testing.T) {
	t.Parallel()
	for _, inclusive := range []bool{false, true} {
		t.Run(fmt.Sprintf("inclusive=%v", inclusive), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewSource(int64(map[bool]int{false: 1, true: 2}[inclusive])))
			srv, c := setup(t, thethingstest.WithEndDateInclusive(inclusive))
			for iter := range 8 {
				key := fmt.Sprintf("k%d", iter)
				// Runs of values sharing one millisecond (up to maxRun), in
				// shuffled order, some identical, some with geo.
				n, maxRun := 500+rng.Intn(3000), 999
				var recs []thethingstest.Record
				at := readsBase
				for len(recs) < n {
					run := 1
					switch rng.Intn(4) {
					case 0:
						run = 1 + rng.Intn(maxRun)
					case 1:
						run = 1 + rng.Intn(5)
					}
					run = min(run, n-len(recs))
					for range run {
						var val string
						switch rng.Intn(5) {
						case 0:
							val = `"same"` // identical values at one millisecond
						case 1:
							val = fmt.Sprintf(`{"n":%d,"s":"x"}`, rng.Intn(3))
						case 2:
							val = fmt.Sprintf(`"s%d"`, rng.Intn(1000))
						default:
							val = fmt.Sprintf("%d.%02d", rng.Intn(100), rng.Intn(100))
						}
						r := thethingstest.Record{Value: json.RawMessage(val), Datetime: at}
						if rng.Intn(6) == 0 {
							r.Geo = &thethingstest.Geo{Lat: float64(rng.Intn(180)) - 90, Long: 2.5}
						}
						recs = append(recs, r)
					}
					// Gaps of 1 ms make values sit exactly on endDate+1 boundaries.
					at = at.Add(time.Duration(1+rng.Intn(3)) * time.Millisecond)
				}
				rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
				require.NoError(t, srv.Seed(sentinelToken, key, recs...))
				oldest, newest := readsBase, at
				stored := srv.Stored(sentinelToken, key)
				span := newest.Sub(oldest)
				var start, end time.Time
				if rng.Intn(3) > 0 {
					start = oldest.Add(time.Duration(rng.Int63n(int64(span))))
				}
				if rng.Intn(3) > 0 {
					end = oldest.Add(time.Duration(rng.Int63n(int64(span))))
					if !start.IsZero() && end.Before(start) {
						start, end = end, start
					}
				}
				if rng.Intn(4) == 0 && !start.IsZero() {
					start = start.Add(time.Duration(rng.Intn(1e6))) // sub-millisecond bound
				}
				// The stored values in [start, end) (a zero bound is none).
				want := canon(t, slices.DeleteFunc(stored, func(r thethingstest.Record) bool {
					return !start.IsZero() && r.Datetime.Before(start) || !end.IsZero() && !r.Datetime.Before(end)
				}))
				limit := []int{0, 0, 1000, 997, 300}[rng.Intn(5)]
				opts := &thethings.ReadOptions{Limit: limit, Start: start, End: end}

				var got []thethings.Value
				for v, err := range c.Values(context.Background(), key, opts) {
					require.NoError(t, err)
					got = append(got, v)
				}
				require.True(t, slices.IsSortedFunc(got, func(a, b thethings.Value) int { return b.Datetime.Compare(a.Datetime) }), "newest first")
				require.Equal(t, want, canon(t, got), "iteration %d: Values window [%s, %s) limit %d", iter, start, end, limit)

				// The same window through a chain of Reads of random sizes.
				var chain []thethings.Value
				o := *opts
				for {
					o.Limit = 1 + rng.Intn(1000)
					p, err := c.Read(context.Background(), key, &o)
					require.NoError(t, err)
					require.LessOrEqual(t, len(p.Values), o.Limit)
					chain = append(chain, p.Values...)
					if p.Next == "" {
						break
					}
					o.Cursor = p.Next
				}
				require.True(t, slices.IsSortedFunc(chain, func(a, b thethings.Value) int { return b.Datetime.Compare(a.Datetime) }), "newest first")
				require.Equal(t, want, canon(t, chain), "iteration %d: Read chain", iter)
			}
		})
	}
}

func TestValuesRequestCount(t *testing.T) {
	t.Parallel()
	const n = 100_000
	srv, c := setup(t)
	seedNumbers(t, srv, "big", n)
	count := 0
	for v, err := range c.Values(context.Background(), "big", nil) {
		require.NoError(t, err)
		if count%9973 == 0 {
			i, err := v.Int64()
			require.NoError(t, err)
			require.EqualValues(t, n-1-count, i)
		}
		count++
	}
	require.Equal(t, n, count)
	pages := (n + 999) / 1000
	reqs := srv.Requests(thethingstest.RouteRead)
	assert.GreaterOrEqual(t, reqs, pages)
	assert.LessOrEqual(t, reqs, pages+2) // +1 for the repeated boundary values, +1 for the empty end
	t.Logf("%d values in %d requests", n, reqs)
}

func TestValuesBreakSendsNoFurtherRequest(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedNumbers(t, srv, "temp", 3000)
	for _, stopAfter := range []int{1, 1000, 1500} {
		before := srv.Requests(thethingstest.RouteRead)
		n := 0
		for _, err := range c.Values(context.Background(), "temp", nil) {
			require.NoError(t, err)
			n++
			if n == stopAfter {
				break
			}
		}
		want := 1
		if stopAfter > 1000 {
			want += (stopAfter - 1000 + 998) / 999
		}
		assert.Equal(t, want, srv.Requests(thethingstest.RouteRead)-before, "break after %d", stopAfter)
	}
}

func TestValuesErrorMidwayYieldedOnce(t *testing.T) {
	t.Parallel()
	srv, c := setup(t, thethings.WithRetry(thethings.NoRetries))
	seedNumbers(t, srv, "temp", 5000)
	srv.SetFaults(thethingstest.Faults{Every503: 2})
	n, errs := 0, 0
	var last error
	for _, err := range c.Values(context.Background(), "temp", nil) {
		if err != nil {
			errs++
			last = err
			continue // the sequence must end by itself
		}
		n++
	}
	assert.Equal(t, 1000, n)
	assert.Equal(t, 1, errs)
	var apiErr *thethings.APIError
	require.ErrorAs(t, last, &apiErr)
	assert.Equal(t, http.StatusServiceUnavailable, apiErr.StatusCode)
	assert.NotContains(t, last.Error(), sentinelToken)
	assert.Equal(t, 2, srv.Requests(thethingstest.RouteRead))
}

func TestReadCursorResumesInANewClient(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedNumbers(t, srv, "temp", 2500)
	p, err := c.Read(context.Background(), "temp", &thethings.ReadOptions{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, p.Values, 1000)
	saved := p.Next
	require.NotEmpty(t, saved)
	require.NotContains(t, saved, sentinelToken)

	// A new client, as after a restart.
	_, c2 := setup(t, srv.URL())
	p2, err := c2.Read(context.Background(), "temp", &thethings.ReadOptions{Limit: 10, Cursor: saved})
	require.NoError(t, err)
	require.Len(t, p2.Values, 10)
	first, _ := p2.Values[0].Int64()
	assert.EqualValues(t, 1499, first)

	rest := 0
	for v, err := range c2.Values(context.Background(), "temp", &thethings.ReadOptions{Cursor: saved}) {
		require.NoError(t, err)
		got, err := v.Int64()
		require.NoError(t, err)
		require.EqualValues(t, 1499-rest, got)
		rest++
	}
	require.Equal(t, 1500, rest)

	// The last page says there is nothing older.
	last, err := c2.Read(context.Background(), "temp", &thethings.ReadOptions{Limit: 1000, Cursor: saved})
	require.NoError(t, err)
	require.NotEmpty(t, last.Next)
	end, err := c2.Read(context.Background(), "temp", &thethings.ReadOptions{Limit: 1000, Cursor: last.Next})
	require.NoError(t, err)
	// The chain repeats one boundary value per request: 999 new, then 501.
	assert.Len(t, last.Values, 999)
	assert.Equal(t, 501, len(end.Values))
	// A short page is no proof of the end: the page after it is.
	require.NotEmpty(t, end.Next)
	empty, err := c2.Read(context.Background(), "temp", &thethings.ReadOptions{Limit: 1000, Cursor: end.Next})
	require.NoError(t, err)
	assert.Empty(t, empty.Values)
	assert.Empty(t, empty.Next)
}

func TestReadDefaultsAndWindow(t *testing.T) {
	t.Parallel()
	for _, inclusive := range []bool{false, true} {
		srv, c := setup(t, thethingstest.WithEndDateInclusive(inclusive))
		seedNumbers(t, srv, "temp", 100)
		p, err := c.Read(context.Background(), "temp", nil)
		require.NoError(t, err)
		require.Len(t, p.Values, 100, "the default limit is 1000, as for Values")
		v, _ := p.Values[0].Int64()
		assert.EqualValues(t, 99, v)

		// [Start, End) with End exactly on a stored value: it is excluded in both modes.
		opts := &thethings.ReadOptions{Limit: 1000, Start: readsBase.Add(10 * time.Second), End: readsBase.Add(20 * time.Second)}
		p, err = c.Read(context.Background(), "temp", opts)
		require.NoError(t, err)
		require.Len(t, p.Values, 10, "inclusive=%v", inclusive)
		first, _ := p.Values[0].Int64()
		last, _ := p.Values[9].Int64()
		assert.EqualValues(t, 19, first)
		assert.EqualValues(t, 10, last)
		// A short page is no proof of the end (v0.2): the next one is.
		require.NotEmpty(t, p.Next)
		opts.Cursor = p.Next
		p, err = c.Read(context.Background(), "temp", opts)
		require.NoError(t, err)
		assert.Empty(t, p.Values)
		assert.Empty(t, p.Next)

		// Limit 1 pages one value at a time, also through ties.
		require.NoError(t, srv.Seed(sentinelToken, "ties", thethingstest.Record{Value: json.RawMessage("1"), Datetime: readsBase},
			thethingstest.Record{Value: json.RawMessage("1"), Datetime: readsBase}, thethingstest.Record{Value: json.RawMessage("2"), Datetime: readsBase}))
		var got []thethings.Value
		o := &thethings.ReadOptions{Limit: 1}
		for range 10 {
			p, err := c.Read(context.Background(), "ties", o)
			require.NoError(t, err)
			got = append(got, p.Values...)
			if p.Next == "" {
				break
			}
			o.Cursor = p.Next
		}
		assert.Equal(t, canon(t, srv.Stored(sentinelToken, "ties")), canon(t, got))
	}
}

func TestReadUnknownKey(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	_, err := c.Read(context.Background(), "never", nil)
	assert.ErrorIs(t, err, thethings.ErrResourceNotFound)
	assert.ErrorIs(t, err, thethings.ErrNotFound)
	assert.NotContains(t, err.Error(), sentinelToken)
	n := 0
	for _, err := range c.Values(context.Background(), "never", nil) {
		n++
		assert.ErrorIs(t, err, thethings.ErrResourceNotFound)
	}
	assert.Equal(t, 1, n)
}

func TestReadBadInputBeforeIO(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedNumbers(t, srv, "temp", 10)
	other, err := c.Read(context.Background(), "temp", &thethings.ReadOptions{Limit: 2})
	require.NoError(t, err)
	good := other.Next
	require.NotEmpty(t, good)
	before := srv.Requests(thethingstest.RouteRead)

	cases := []struct {
		key  string
		opts *thethings.ReadOptions
		want error
	}{
		{"", nil, thethings.ErrInvalidKey},
		{"$geo", nil, thethings.ErrInvalidKey},
		{"$settings", nil, thethings.ErrInvalidKey},
		{"a/b", nil, thethings.ErrInvalidKey},
		{"a b", nil, thethings.ErrInvalidKey},
		{"temp?x=1", nil, thethings.ErrInvalidKey},
		{"temp", &thethings.ReadOptions{Limit: -1}, thethings.ErrInvalidOption},
		{"temp", &thethings.ReadOptions{Limit: 1001}, thethings.ErrInvalidOption},
		{"temp", &thethings.ReadOptions{Start: readsBase, End: readsBase.Add(-time.Millisecond)}, thethings.ErrInvalidOption},
		{"temp", &thethings.ReadOptions{Cursor: good, Start: readsBase}, thethings.ErrInvalidOption},
		{"other", &thethings.ReadOptions{Cursor: good}, thethings.ErrInvalidCursor},
		{"temp", &thethings.ReadOptions{Cursor: "not a cursor"}, thethings.ErrInvalidCursor},
		{"temp", &thethings.ReadOptions{Cursor: good[:len(good)-1]}, thethings.ErrInvalidCursor},
		{"temp", &thethings.ReadOptions{Cursor: good + "A"}, thethings.ErrInvalidCursor},
	}
	// Every single-character change of the cursor is detected.
	for i := range good {
		for _, r := range []byte{'A', 'z', '0', '_', '-'} {
			if good[i] == r {
				continue
			}
			tampered := good[:i] + string(r) + good[i+1:]
			cases = append(cases, struct {
				key  string
				opts *thethings.ReadOptions
				want error
			}{"temp", &thethings.ReadOptions{Cursor: tampered}, thethings.ErrInvalidCursor})
		}
	}
	for _, tc := range cases {
		_, err := c.Read(context.Background(), tc.key, tc.opts)
		require.ErrorIs(t, err, tc.want, "Read(%q, %+v)", tc.key, tc.opts)
		assert.True(t, strings.HasPrefix(err.Error(), "thethings:"), err.Error())
		n := 0
		for _, err := range c.Values(context.Background(), tc.key, tc.opts) {
			n++
			require.ErrorIs(t, err, tc.want, "Values(%q, %+v)", tc.key, tc.opts)
		}
		require.Equal(t, 1, n)
	}
	assert.Equal(t, before, srv.Requests(thethingstest.RouteRead), "bad input reached the server")
}

func TestValuesStalls(t *testing.T) {
	t.Parallel()
	for _, inclusive := range []bool{false, true} {
		srv, c := setup(t, thethingstest.WithEndDateInclusive(inclusive))
		recs := make([]thethingstest.Record, 1001)
		for i := range recs {
			recs[i] = thethingstest.Record{Value: json.RawMessage(fmt.Sprint(i)), Datetime: readsBase.Add(time.Hour)}
		}
		require.NoError(t, srv.Seed(sentinelToken, "burst", recs...))
		seedNumbers(t, srv, "burst", 10)
		n, errs := 0, 0
		for _, err := range c.Values(context.Background(), "burst", nil) {
			if err != nil {
				errs++
				assert.ErrorIs(t, err, thethings.ErrPaginationStalled)
				continue
			}
			n++
		}
		assert.Equal(t, 1000, n)
		assert.Equal(t, 1, errs)
		assert.Equal(t, 2, srv.Requests(thethingstest.RouteRead), "no endless loop")

		// 999 values at one millisecond do not stall, and neither does a
		// small Limit: the next request asks for the repeated values too.
		require.NoError(t, srv.Seed(sentinelToken, "ties", recs[:999]...))
		seedNumbers(t, srv, "ties", 10)
		require.NoError(t, srv.Seed(sentinelToken, "few", recs[:7]...))
		seedNumbers(t, srv, "few", 3)
		for key, limit := range map[string]int{"ties": 0, "few": 5} {
			got := c.Values(context.Background(), key, &thethings.ReadOptions{Limit: limit})
			assert.Equal(t, canon(t, srv.Stored(sentinelToken, key)), canon(t, got))
		}
	}
}

func TestValuesContextCancelled(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedNumbers(t, srv, "temp", 3000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, errs := 0, 0
	for _, err := range c.Values(ctx, "temp", nil) {
		if err != nil {
			errs++
			assert.ErrorIs(t, err, context.Canceled)
			continue
		}
		n++
		if n == 10 {
			cancel()
		}
	}
	assert.Equal(t, 1000, n)
	assert.Equal(t, 1, errs)
}

func TestReadDecodesWhatThePlatformSends(t *testing.T) {
	t.Parallel()
	body := `[
	 {"key":"k","value":"9000","datetime":"2015-01-30T15:35:33.000Z"},
	 {"value":12345678901234567890,"datetime":"2015-01-30T15:35:32.500Z","geo":{"lat":41.390205,"long":2.154007}},
	 {"key":"k","value":{"a":[1,2.50,"x"],"b":null},"datetime":"20150130153531","extra":[{"}":"]"}]},
	 {"key":"k","value":"caf\u00e9 \"q\"","datetime":"2015-01-30T15:35:30Z"},
	 {"key":"k","value":"ünï","datetime":"2015-01-30T15:35:29.1Z"},
	 {"key":"k","value":true,"datetime":"2015-01-30T15:35:28.000Z","geo":null},
	 {"key":"k","value":null,"datetime":"2015-01-30T15:35:27.000Z"},
	 {"key":"k","value":[1,2],"datetime":"2015-01-30T15:35:26.000+01:00"},
	 {"datetime":"2015-01-30T15:35:25.000Z","key":"k","value":-0.5e-3}
	]`
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt, thethings.WithRetry(thethings.NoRetries))
	mt.RegisterRegexpResponder(http.MethodGet, regexp.MustCompile(`/resources/k(\?|$)`), httpmock.NewStringResponder(200, body))
	p, err := c.Read(context.Background(), "k", &thethings.ReadOptions{Limit: 9})
	require.NoError(t, err)
	require.Len(t, p.Values, 9)
	vs := p.Values
	at := time.Date(2015, 1, 30, 15, 35, 33, 0, time.UTC)

	assert.Equal(t, thethings.Value{Key: "k", Value: "9000", Datetime: at}, vs[0])
	assert.Equal(t, thethings.Value{Key: "k", Value: json.Number("12345678901234567890"), Datetime: at.Add(-500 * time.Millisecond),
		Geo: &thethings.Geo{Lat: 41.390205, Long: 2.154007}}, vs[1])
	assert.Equal(t, map[string]any{"a": []any{json.Number("1"), json.Number("2.50"), "x"}, "b": nil}, vs[2].Value)
	assert.Equal(t, at.Add(-2*time.Second), vs[2].Datetime)
	assert.Equal(t, `café "q"`, vs[3].Value)
	assert.Equal(t, "ünï", vs[4].Value)
	assert.Equal(t, at.Add(-4*time.Second+100*time.Millisecond), vs[4].Datetime)
	assert.Equal(t, true, vs[5].Value)
	assert.Nil(t, vs[5].Geo)
	assert.Nil(t, vs[6].Value)
	// Out of order in the answer (+01:00 is an hour older): sorted newest first.
	assert.Equal(t, json.Number("-0.5e-3"), vs[7].Value)
	assert.Equal(t, []any{json.Number("1"), json.Number("2")}, vs[8].Value)
	assert.Equal(t, at.Add(-time.Hour-7*time.Second), vs[8].Datetime)
	for _, v := range vs {
		assert.Equal(t, time.UTC, v.Datetime.Location())
	}
}

func TestReadRejectsMalformedAnswers(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		``, `{}`, `[`, `[{]`, `[{"key":"k","value":1}]`, `[{"key":"k","value":01,"datetime":"2015-01-30T15:35:33.000Z"}]`,
		`[{"key":"k","value":1,"datetime":"yesterday"}]`, `[{"key":"k","value":1,"datetime":"2015-02-30T15:35:33.000Z"}]`,
		`[{"key":"k","value":{"a":},"datetime":"2015-01-30T15:35:33.000Z"}]`,
		`[{"key":"k","value":1,"datetime":"2015-01-30T15:35:33.000Z","geo":{"lat":1}}]`, `[{"key":"k","value":tru,"datetime":"2015-01-30T15:35:33.000Z"}]`,
		`[{"key":"k","value":"a` + "\n" + `b","datetime":"2015-01-30T15:35:33.000Z"}]`,
	} {
		mt := httpmock.NewMockTransport()
		_, c := setup(t, mt, thethings.WithRetry(thethings.NoRetries))
		mt.RegisterRegexpResponder(http.MethodGet, regexp.MustCompile(`/resources/k(\?|$)`), httpmock.NewStringResponder(200, body))
		_, err := c.Read(context.Background(), "k", &thethings.ReadOptions{Limit: 10})
		require.Error(t, err, "body %q", body)
		assert.True(t, strings.HasPrefix(err.Error(), "thethings:"), err.Error())
		assert.NotContains(t, err.Error(), sentinelToken)
	}
}

func TestReadQuery(t *testing.T) {
	t.Parallel()
	mt := httpmock.NewMockTransport()
	_, c := setup(t, mt)
	var got []string
	mt.RegisterRegexpResponder(http.MethodGet, regexp.MustCompile(`/resources/k(\?|$)`), func(r *http.Request) (*http.Response, error) {
		got = append(got, r.URL.RawQuery)
		return httpmock.NewStringResponse(200, `[{"key":"k","value":1,"datetime":"2015-01-30T15:35:33.123Z"}]`), nil
	})
	start := time.Date(2015, 1, 1, 0, 0, 0, 0, time.FixedZone("X", 3600))
	end := time.Date(2015, 2, 1, 0, 0, 0, 1, time.UTC) // rounded up to the next millisecond
	p, err := c.Read(context.Background(), "k", &thethings.ReadOptions{Limit: 1, Start: start, End: end})
	require.NoError(t, err)
	require.NotEmpty(t, p.Next)
	_, err = c.Read(context.Background(), "k", &thethings.ReadOptions{Limit: 7, Cursor: p.Next})
	require.NoError(t, err)
	assert.Equal(t, []string{
		"endDate=2015-02-01T00%3A00%3A00.001Z&limit=1&startDate=2014-12-31T23%3A00%3A00.000Z",
		// Values up to and including the page's oldest, plus room for the repeat.
		"endDate=2015-01-30T15%3A35%3A33.124Z&limit=8&startDate=2014-12-31T23%3A00%3A00.000Z",
	}, got)
}

func TestValueAccessors(t *testing.T) {
	t.Parallel()
	type want struct {
		f   float64
		fOK bool
		i   int64
		iOK bool
		s   string
		sOK bool
	}
	cases := []struct {
		v any
		w want
	}{
		{json.Number("21.5"), want{21.5, true, 0, false, "21.5", true}},
		{json.Number("9000"), want{9000, true, 9000, true, "9000", true}},
		{json.Number("9223372036854775807"), want{9223372036854775807, true, 9223372036854775807, true, "9223372036854775807", true}},
		{json.Number("1e3"), want{1000, true, 1000, true, "1e3", true}},
		{json.Number("1e400"), want{0, false, 0, false, "1e400", true}},
		{"9000", want{9000, true, 9000, true, "9000", true}},
		{"12.0", want{12, true, 12, true, "12.0", true}},
		{"NaN", want{0, false, 0, false, "NaN", true}},
		{"abc", want{0, false, 0, false, "abc", true}},
		{true, want{0, false, 0, false, "true", true}},
		{nil, want{0, false, 0, false, "", false}},
		{map[string]any{"a": 1}, want{0, false, 0, false, "", false}},
		{21.5, want{21.5, true, 0, false, "21.5", true}},
		{float32(2.5), want{2.5, true, 0, false, "2.5", true}},
		{7, want{7, true, 7, true, "7", true}},
		{uint8(7), want{7, true, 7, true, "7", true}},
		{json.RawMessage(`"42"`), want{42, true, 42, true, "42", true}},
	}
	for _, tc := range cases {
		v := thethings.Value{Key: "k", Value: tc.v}
		f, err := v.Float64()
		if tc.w.fOK {
			assert.NoError(t, err, "%#v", tc.v)
			assert.Equal(t, tc.w.f, f, "%#v", tc.v)
		} else {
			assert.ErrorIs(t, err, thethings.ErrInvalidValue, "%#v", tc.v)
		}
		i, err := v.Int64()
		if tc.w.iOK {
			assert.NoError(t, err, "%#v", tc.v)
			assert.Equal(t, tc.w.i, i, "%#v", tc.v)
		} else {
			assert.ErrorIs(t, err, thethings.ErrInvalidValue, "%#v", tc.v)
		}
		s, err := v.Text()
		if tc.w.sOK {
			assert.NoError(t, err, "%#v", tc.v)
			assert.Equal(t, tc.w.s, s, "%#v", tc.v)
		} else {
			assert.ErrorIs(t, err, thethings.ErrInvalidValue, "%#v", tc.v)
		}
	}
}

func TestValueDecode(t *testing.T) {
	t.Parallel()
	var n int
	require.NoError(t, thethings.Value{Value: "9000"}.Decode(&n), "a string holding a number")
	assert.Equal(t, 9000, n)
	var s string
	require.NoError(t, thethings.Value{Value: "9000"}.Decode(&s))
	assert.Equal(t, "9000", s)
	var big uint64
	require.NoError(t, thethings.Value{Value: json.Number("18446744073709551615")}.Decode(&big))
	assert.Equal(t, uint64(18446744073709551615), big)
	var obj struct {
		A []float64 `json:"a"`
	}
	require.NoError(t, thethings.Value{Value: map[string]any{"a": []any{json.Number("1.5")}}}.Decode(&obj))
	assert.Equal(t, []float64{1.5}, obj.A)
	require.NoError(t, thethings.Value{Value: json.RawMessage(`{"a":[2]}`)}.Decode(&obj))
	assert.Equal(t, []float64{2}, obj.A)

	for _, dst := range []any{nil, n, (*int)(nil)} {
		assert.ErrorIs(t, thethings.Value{Value: json.Number("1")}.Decode(dst), thethings.ErrInvalidValue)
	}
	assert.ErrorIs(t, thethings.Value{Value: "abc"}.Decode(&n), thethings.ErrInvalidValue)
	assert.ErrorIs(t, thethings.Value{Value: json.Number("1.5")}.Decode(&n), thethings.ErrInvalidValue)
}

func TestValuesErrorsCarryNoToken(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedNumbers(t, srv, "temp", 10)
	srv.SetFaults(thethingstest.Faults{Every503: 1})
	for _, err := range c.Values(context.Background(), "temp", nil) {
		require.Error(t, err)
		assert.NotContains(t, err.Error(), sentinelToken)
		assert.False(t, errors.Is(err, thethings.ErrResourceNotFound))
	}
}

func TestReadDefaultsToFullPages(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	seedNumbers(t, srv, "n", 1500)
	page, err := c.Read(context.Background(), "n", nil)
	require.NoError(t, err)
	assert.Len(t, page.Values, 1000, "Read(ctx, key, nil) reads a page of 1000, as Values does")
	assert.NotEmpty(t, page.Next)
	page, err = c.Read(context.Background(), "n", &thethings.ReadOptions{})
	require.NoError(t, err)
	assert.Len(t, page.Values, 1000)
}
