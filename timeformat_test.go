package thethings

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/thethings-go/thethings/internal/wire"
)

func TestParseTime(t *testing.T) {
	t.Parallel()
	sec := time.Date(2015, 5, 20, 13, 0, 0, 0, time.UTC)
	ms := time.Date(2017, 1, 16, 10, 25, 10, 644_000_000, time.UTC)
	cases := map[string]time.Time{
		"20150520130000":                 sec,
		"20150520T130000":                sec,
		"2015-05-20T13:00:00Z":           sec,
		"2015-05-20T13:00:00":            sec,
		"2015-05-20t13:00:00z":           sec,
		"2015-05-20T15:00:00+02:00":      sec,
		"2015-05-20T08:00:00-05:00":      sec,
		"2017-01-16T10:25:10.644Z":       ms,
		"2017-01-16T10:25:10.644":        ms,
		"2017-01-16T10:25:10.644000":     ms,
		"2017-01-16T11:25:10.644+01:00":  ms,
		"2017-01-16T10:25:10.644123Z":    ms.Add(123 * time.Microsecond),
		"2017-01-16T10:25:10.644123456Z": ms.Add(123456 * time.Nanosecond),
	}
	for in, want := range cases {
		got, err := ParseTime(in)
		if want.IsZero() {
			assert.ErrorIs(t, err, ErrInvalidValue, in)
			continue
		}
		require.NoError(t, err, in)
		assert.True(t, want.Equal(got), "%s: got %s want %s", in, got, want)
		assert.Equal(t, time.UTC, got.Location(), in)
	}
	for _, bad := range []string{"", "2015", "2015052013000", "201505201300000", "20151320130000", "2015-05-20 13:00:00",
		"2015-05-20T25:00:00Z", "20150520X130000", "abcdefghijklmn", "2015-05-20T13:00:00+2", "1494587224"} {
		_, err := ParseTime(bad)
		assert.ErrorIs(t, err, ErrInvalidValue, bad)
	}
}

func TestFormatTimeIsUTC(t *testing.T) {
	t.Parallel()
	kolkata := time.FixedZone("IST", 5*3600+1800)
	local := time.Date(2015, 5, 20, 18, 30, 0, 0, kolkata)
	assert.Equal(t, "20150520130000", FormatTime(local))
	assert.Equal(t, "20150520130000", FormatTime(local.Add(999*time.Millisecond)), "FormatTime drops sub-seconds")
	assert.Equal(t, "20150520130000", string(wire.AppendDatetime(nil, local)))
	assert.Equal(t, "2015-05-20T13:00:00.250Z", string(wire.AppendDatetime(nil, local.Add(250*time.Millisecond))))
	assert.Equal(t, "20150520130000", string(wire.AppendDatetime(nil, local.Add(999*time.Microsecond))), "below a millisecond is whole seconds")
	assert.Equal(t, "2015-05-20T13:00:00.001Z", queryTime(local.Add(1500*time.Microsecond)))
}

func TestTimeRoundTrip(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 11, 26, 23, 59, 59, 0, time.UTC)
	for _, d := range []time.Duration{0, time.Millisecond, 999 * time.Millisecond, 42 * time.Hour} {
		in := base.Add(d)
		for _, s := range []string{string(wire.AppendDatetime(nil, in)), queryTime(in), FormatTime(in)} {
			got, err := ParseTime(s)
			require.NoError(t, err, s)
			want := in
			if len(s) == len(compactLayout) {
				want = in.Truncate(time.Second)
			}
			assert.True(t, want.Equal(got), "%s: %s != %s", s, got, want)
		}
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"20150520130000", "20150520T130000", "2017-01-16T10:25:10.644Z",
		"2017-01-16T10:25:10.644", "2015-05-20T15:00:00+02:00", "", "2015-05-20T", "99999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTime(s)
		if err != nil {
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("%q parsed to a non-UTC time %s", s, got)
		}
		// Whatever parses must survive the SDK's own formats.
		again, err := ParseTime(queryTime(got))
		if err != nil || !again.Equal(got.Truncate(time.Millisecond)) {
			if got.Year() >= 0 && got.Year() <= 9999 {
				t.Fatalf("%q: %s did not round-trip through %q: %v", s, got, queryTime(got), err)
			}
		}
	})
}
