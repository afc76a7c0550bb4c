package wire

import "time"

// Layouts of the platform's datetimes, for the SDK's every use.
const (
	CompactLayout = "20060102150405"           // the documented write and query form
	ISOMillis     = "2006-01-02T15:04:05.000Z" // with milliseconds, what the platform returns
)

// Unix seconds of 0000-01-01, 0001-01-01 and 10000-01-01 (UTC): the range
// of four-digit years, and the first year a datetime is sent with.
// UnixYear10000 bounds every date the SDK sends or reads: the platform's
// forms hold the years 1..9999.
const (
	unixYear0     = -62167219200
	unixYear1     = -62135596800
	UnixYear10000 = 253402300800
)

// AppendDatetime appends how a value's datetime is written: the documented
// compact form YYYYMMDDHHmmss when t has whole milliseconds of zero, else
// ISO 8601 UTC with milliseconds (the platform's precision; finer digits
// are dropped). It does not allocate: it computes the civil date itself, as
// time.AppendFormat was most of the cost of encoding a batch.
func AppendDatetime(b []byte, t time.Time) []byte {
	secs := t.Unix()
	if secs < unixYear0 || secs >= UnixYear10000 {
		t = t.UTC().Truncate(time.Millisecond)
		if t.Nanosecond() == 0 {
			return t.AppendFormat(b, CompactLayout)
		}
		return t.AppendFormat(b, ISOMillis)
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
