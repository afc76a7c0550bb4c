// Package wire is the one JSON layer for the platform's items, the
// {"key":..,"value":..,"datetime":..,"geo":{"lat":..,"long":..}} objects
// that writes send and read answers and subscription frames carry. It owns
// their validation (keys, values, positions, datetimes) and the sentinels
// ErrInvalidKey and ErrInvalidValue, their encoding (AppendItem,
// AppendBatch: what encoding/json would produce, without its cost), their
// allocation-free decoding (Decoder: values come out as encoding/json
// decodes them into an interface with UseNumber), the one Geo, and the
// scanning primitives decoding is built from.
package wire

import (
	"errors"
	"time"
)

// ErrSyntax is wrapped by every error about malformed input. The messages
// are worded for the SDK's users: they surface from read answers.
var ErrSyntax = errors.New("malformed read answer")

func syntaxErr(b []byte, i int) error {
	return Errorf("thethings: %w at offset %d of %d", ErrSyntax, i, len(b))
}

// IsSpace reports whether c is JSON whitespace.
func IsSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// SkipWS returns the index of the first non-whitespace byte of b at or
// after i.
func SkipWS(b []byte, i int) int {
	for i < len(b) && IsSpace(b[i]) {
		i++
	}
	return i
}

// ScanString returns the index after the string starting at b[i] == '"',
// whether it holds escapes, and whether it is plain ASCII. Control
// characters and a missing closing quote are errors; escapes are not
// checked.
func ScanString(b []byte, i int) (end int, escaped, ascii bool, err error) {
	ascii = true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped, ascii, nil
		case c == '\\':
			escaped = true
			j++
		case c < 0x20:
			return j, false, false, syntaxErr(b, j)
		case c >= 0x80:
			ascii = false
		}
	}
	return len(b), false, false, syntaxErr(b, len(b))
}

// SkipValue returns the index after the JSON value starting at b[i]. It
// checks numbers and literals fully, and of objects and arrays their
// nesting and that their strings hold no control characters (their
// contents are checked when they are decoded).
func SkipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return i, syntaxErr(b, i)
	}
	switch c := b[i]; {
	case c == '"':
		end, _, _, err := ScanString(b, i)
		return end, err
	case c == '{' || c == '[':
		var s Scanner
		n, done := s.Scan(b[i:])
		if at, bad := s.Control(); bad {
			return i + at, syntaxErr(b, i+at)
		}
		if !done {
			return len(b), syntaxErr(b, len(b))
		}
		return i + n, nil
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	default:
		return ScanNumber(b, i)
	}
}

func literal(b []byte, i int, word string) (int, error) {
	if len(b)-i < len(word) || string(b[i:i+len(word)]) != word {
		return i, syntaxErr(b, i)
	}
	return i + len(word), nil
}

// ScanNumber returns the index after the number starting at b[i], checking
// JSON number syntax: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func ScanNumber(b []byte, i int) (int, error) {
	start := i
	digits := func() bool {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return start, syntaxErr(b, start)
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return start, syntaxErr(b, start)
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return start, syntaxErr(b, start)
		}
	}
	return i, nil
}

// Scanner finds the end of a JSON object or array by tracking its depth,
// strings and escapes, without validating anything else. It can be fed the
// value in pieces: its state carries over from one Scan to the next. The
// zero Scanner expects the value's opening bracket; set it back to zero for
// the next value.
type Scanner struct {
	depth   int
	inStr   bool
	esc     bool
	n       int // bytes scanned so far
	control int // 1 + offset of the first control character inside a string, or 0
	commas  int // commas at depth 1: elements of an array ended so far
}

// Scan scans b, the continuation of the value, and returns how many of its
// bytes belong to the value and whether the value ended there.
func (s *Scanner) Scan(b []byte) (n int, done bool) {
	depth, inStr, esc := s.depth, s.inStr, s.esc
	for i, c := range b {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			case c < 0x20 && s.control == 0:
				s.control = s.n + i + 1
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				s.depth, s.inStr, s.esc = 0, false, false
				s.n += i + 1
				return i + 1, true
			}
		case ',':
			if depth == 1 {
				s.commas++
			}
		}
	}
	s.depth, s.inStr, s.esc = depth, inStr, esc
	s.n += len(b)
	return len(b), false
}

// Control returns the offset, from the start of the value, of the first
// control character seen inside a string (JSON forbids them there).
func (s *Scanner) Control() (offset int, ok bool) {
	return s.control - 1, s.control > 0
}

// ParseISOMillis parses the platform's own datetime form,
// 2006-01-02T15:04:05.000Z, with a fraction of 0 to 9 digits, without
// allocating. The result is in UTC. ok is false for any other form.
func ParseISOMillis(b []byte) (t time.Time, ok bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	nsec := 0
	if rest := b[19 : len(b)-1]; len(rest) > 0 {
		if rest[0] != '.' || len(rest) < 2 || len(rest) > 10 {
			return time.Time{}, false
		}
		frac, ok := digits(rest[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(rest) {
			frac *= 10
		}
		nsec = frac
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func digits(s []byte) (int, bool) {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
