package main

import (
	"strings"
	"unicode/utf8"
)

// Whatever the platform or a device sent (values, keys, ids, error
// messages) may hold control characters, and a terminal obeys them: ESC
// starts sequences that set the window title, clear the screen or write the
// clipboard (OSC 52), BEL rings, and the C1 controls U+0080–U+009F (U+009B
// is CSI) act like ESC sequences on many terminals. Nothing of it reaches
// the terminal raw: text goes through clean, JSON through appendSafeJSON,
// and both ask escaped which characters to escape.

// escaped reports whether r (n bytes of UTF-8, or a byte that is not
// UTF-8 when r is utf8.RuneError and n is 1) is printed escaped: the C0
// controls, DEL, the C1 controls, the bidirectional overrides (they reorder
// what a reader sees) and bytes that are not UTF-8.
func escaped(r rune, n int) bool {
	return r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f ||
		r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 ||
		r == utf8.RuneError && n <= 1
}

const hexDigits = "0123456789abcdef"

// appendU appends r as \uNNNN.
func appendU(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

// plain reports whether b needs no escaping at all: printable ASCII.
func plain(b byte) bool { return b >= 0x20 && b < 0x7f }

// clean returns s with every character escaped that escaped reports, as
// \xNN below U+0080 and for bytes that are not UTF-8, else as \uNNNN: a
// value holding ESC [ 2 J prints as \x1b[2J, CSI as \u009b.
func clean(s string) string {
	i := 0
	for i < len(s) && plain(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	b = append(b, s[:i]...)
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case !escaped(r, n):
			b = append(b, s[i:i+n]...)
		case r < 0x80 || n == 1:
			b = append(b, '\\', 'x', hexDigits[s[i]>>4], hexDigits[s[i]&0xf])
		default:
			b = appendU(b, r)
		}
		i += n
	}
	return string(b)
}

// appendSafeJSON appends the JSON text js to dst with the characters
// encoding/json leaves raw (DEL, the C1 controls, the bidirectional
// overrides) escaped as \uNNNN, and bytes that are not UTF-8 as \ufffd.
// Valid JSON holds them only inside strings, so the result is valid JSON
// with the same meaning.
func appendSafeJSON(dst, js []byte) []byte {
	i := 0
	for i < len(js) && js[i] < 0x7f {
		i++
	}
	dst = append(dst, js[:i]...)
	for i < len(js) {
		r, n := utf8.DecodeRune(js[i:])
		switch {
		case !escaped(r, n) || r < 0x20: // encoding/json escaped C0 already
			dst = append(dst, js[i:i+n]...)
		case n == 1 && r == utf8.RuneError:
			dst = appendU(dst, utf8.RuneError)
		default:
			dst = appendU(dst, r)
		}
		i += n
	}
	return dst
}

// maxErrorLine is the most characters of an error message printed.
const maxErrorLine = 400

// errorLine returns msg as one short line, safe for a terminal: white
// space runs (a proxy's HTML page has many lines) become one space, control
// characters are escaped, and a longer message than maxErrorLine characters
// loses its middle, so both what failed (its start) and what it means for
// the data (its end) stay.
func errorLine(msg string) string {
	s := clean(strings.Join(strings.Fields(msg), " "))
	if utf8.RuneCountInString(s) <= maxErrorLine {
		return s
	}
	r := []rune(s)
	return string(r[:maxErrorLine*3/4]) + " … " + string(r[len(r)-maxErrorLine/4:])
}
