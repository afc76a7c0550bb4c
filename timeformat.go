package thethings

import (
	"strings"
	"time"

	"github.com/thethings-go/thethings/internal/wire"
)

// Layouts of the dates the platform reads and writes.
const (
	compactLayout  = wire.CompactLayout
	compactTLayout = "20060102T150405" // the form of the JavaScript SDK's README
	isoMillis      = wire.ISOMillis
)

// FormatTime formats t in the platform's documented form, YYYYMMDDHHmmss,
// in UTC. Sub-second digits are dropped; writes that need them are sent in
// ISO 8601 by the SDK itself.
func FormatTime(t time.Time) string {
	return t.UTC().Format(compactLayout)
}

// ParseTime parses every date form the platform uses: YYYYMMDDHHmmss,
// YYYYMMDDTHHmmss, and ISO 8601 with or without fractional seconds and with
// or without a zone (no zone means UTC, as the platform considers all times
// to be). The result is in UTC. A string in no such form is an error
// matching ErrInvalidValue.
func ParseTime(s string) (time.Time, error) {
	switch {
	case len(s) == len(compactLayout) && isDigits(s):
		if t, err := time.Parse(compactLayout, s); err == nil {
			return t, nil
		}
	case len(s) == len(compactTLayout) && s[8] == 'T' && isDigits(s[:8]) && isDigits(s[9:]):
		if t, err := time.Parse(compactTLayout, s); err == nil {
			return t, nil
		}
	case len(s) >= len("2006-01-02T15:04:05") && (s[10] == 'T' || s[10] == 't'):
		u := strings.ToUpper(s)
		if hasZone(u) {
			if t, err := time.Parse(time.RFC3339Nano, u); err == nil {
				return t.UTC(), nil
			}
		} else if t, err := time.Parse("2006-01-02T15:04:05", u); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errorf("thethings: time %q is in no form the platform uses: %w", shorten(s), ErrInvalidValue)
}

// hasZone reports whether an upper-cased ISO 8601 string ends in a zone.
func hasZone(s string) bool {
	if strings.HasSuffix(s, "Z") {
		return true
	}
	clock := s[len("2006-01-02T"):]
	return strings.ContainsAny(clock, "+-")
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// queryTime is how startDate and endDate are sent: ISO 8601 UTC with
// milliseconds, the precision of the platform's own datetimes.
func queryTime(t time.Time) string {
	return t.UTC().Format(isoMillis)
}
