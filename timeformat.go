package thethings

import (
	"fmt"
	"strings"
	"time"
)

// Layouts of the dates the platform reads and writes.
const (
	compactLayout  = "20060102150405"           // the documented write and query form
	compactTLayout = "20060102T150405"          // the form of the JavaScript SDK's README
	isoMillis      = "2006-01-02T15:04:05.000Z" // what the platform returns
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
	return time.Time{}, fmt.Errorf("thethings: time %q is in no form the platform uses: %w", shorten(s), ErrInvalidValue)
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

// wireTime is how a value's datetime is written: the documented compact
// form when t has whole seconds, else ISO 8601 UTC with milliseconds (the
// platform's precision; finer digits are dropped).
func wireTime(t time.Time) string {
	t = t.UTC().Truncate(time.Millisecond)
	if t.Nanosecond() == 0 {
		return t.Format(compactLayout)
	}
	return t.Format(isoMillis)
}

// Unix seconds of 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z: the
// range of four-digit years.
const (
	unixYear0     = -62167219200
	unixYear10000 = 253402300800
)

// appendWireTime appends wireTime(t) to b without allocating. It computes
// the civil date itself: time.AppendFormat was most of the cost of encoding
// a batch.
func appendWireTime(b []byte, t time.Time) []byte {
	secs := t.Unix()
	if secs < unixYear0 || secs >= unixYear10000 {
		t = t.UTC().Truncate(time.Millisecond)
		if t.Nanosecond() == 0 {
			return t.AppendFormat(b, compactLayout)
		}
		return t.AppendFormat(b, isoMillis)
	}
	days := (secs - unixYear0) / 86400 // days since 0000-01-01, >= 0
	sod := int(secs - unixYear0 - days*86400)
	year, month, day := civil(days)
	ms := t.Nanosecond() / int(time.Millisecond)
	if ms == 0 {
		b = appendDigits(b, year/100)
		b = appendDigits(b, year%100)
		b = appendDigits(b, month)
		b = appendDigits(b, day)
		b = appendDigits(b, sod/3600)
		b = appendDigits(b, sod/60%60)
		return appendDigits(b, sod%60)
	}
	b = appendDigits(b, year/100)
	b = appendDigits(b, year%100)
	b = append(b, '-')
	b = appendDigits(b, month)
	b = append(b, '-')
	b = appendDigits(b, day)
	b = append(b, 'T')
	b = appendDigits(b, sod/3600)
	b = append(b, ':')
	b = appendDigits(b, sod/60%60)
	b = append(b, ':')
	b = appendDigits(b, sod%60)
	b = append(b, '.', byte('0'+ms/100))
	b = appendDigits(b, ms%100)
	return append(b, 'Z')
}

// civil converts days since 0000-01-01 (>= 0) to a proleptic Gregorian
// date (H. Hinnant's civil_from_days, counted from 0000-03-01 and shifted by
// one 400-year era to stay non-negative).
func civil(days int64) (year, month, day int) {
	z := days - 60 + 146097
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day = int(doy - (153*mp+2)/5 + 1)
	month = int(mp + 3)
	if month > 12 {
		month -= 12
	}
	year = int(yoe + (era-1)*400)
	if month <= 2 {
		year++
	}
	return year, month, day
}

const digitPairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

// appendDigits appends v (0..99) as two digits.
func appendDigits(b []byte, v int) []byte {
	return append(b, digitPairs[2*v], digitPairs[2*v+1])
}

// queryTime is how startDate and endDate are sent: ISO 8601 UTC with
// milliseconds, the precision of the platform's own datetimes.
func queryTime(t time.Time) string {
	return t.UTC().Format(isoMillis)
}
