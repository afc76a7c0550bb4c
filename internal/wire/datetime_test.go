package wire

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestAppendDatetimeMatchesFormat checks the hand-written date formatter
// against time.Format over random instants of every four-digit year, with
// and without milliseconds, in zones other than UTC, and at the edges.
func TestAppendDatetimeMatchesFormat(t *testing.T) {
	t.Parallel()
	want := func(t time.Time) string {
		t = t.UTC().Truncate(time.Millisecond)
		if t.Nanosecond() == 0 {
			return t.Format(CompactLayout)
		}
		return t.Format(ISOMillis)
	}
	check := func(tm time.Time) {
		t.Helper()
		if got, w := string(AppendDatetime(nil, tm)), want(tm); got != w {
			t.Fatalf("%v: got %s, want %s", tm, got, w)
		}
	}
	if time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Unix() != unixYear0 ||
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix() != unixYear1 ||
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).Unix() != UnixYear10000 {
		t.Fatal("year constants")
	}
	r := rand.New(rand.NewPCG(1, 2))
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	for i := range 200000 {
		tm := time.Unix(unixYear0+r.Int64N(UnixYear10000-unixYear0), 0)
		if i%2 == 0 {
			tm = tm.Add(time.Duration(r.Int64N(1e9)))
		}
		if i%3 == 0 {
			tm = tm.In(zone)
		}
		check(tm)
	}
	for _, tm := range []time.Time{
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(0, 2, 29, 12, 0, 0, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1600, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(1900, 2, 28, 23, 59, 59, 999_000_000, time.UTC),
		time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2000, 2, 29, 0, 0, 0, 1_000_000, time.UTC),
		time.Date(2024, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // beyond: the slow path
		time.Date(-1, 12, 31, 0, 0, 0, 5_000_000, time.UTC),
	} {
		check(tm)
	}
}
