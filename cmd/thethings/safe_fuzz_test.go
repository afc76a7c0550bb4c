package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzTerminalEscapes: whatever string a device or the platform sends,
// clean and errorLine print nothing a terminal obeys, as valid UTF-8,
// within a bounded size, and leave alone text that needs no escaping; and
// appendSafeJSON turns the JSON encoding/json makes of it into JSON with
// nothing raw either, that still decodes to the same string.
func FuzzTerminalEscapes(f *testing.F) {
	for _, s := range []string{
		"", "plain", "naïve ✓ 日本", hostile, rawC1, htmlPage, osc52, csiC1, bidi,
		"\u2066isolate\u2069", "\xff\xfe", "\xe2\x80", "\u00a0nbsp", "\ufffd", `back\slash "quoted"`,
		"\u2028\u2029<&>", strings.Repeat("é", 500) + "\x1b" + strings.Repeat("z", 200),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := clean(s)
		if i := rawAt(c, false); i >= 0 {
			t.Fatalf("clean(%q) = %q: raw %q at byte %d", s, c, c[i:min(i+4, len(c))], i)
		}
		if len(c) > 6*len(s) {
			t.Fatalf("clean(%q): %d bytes out of %d", s, len(c), len(s))
		}
		if rawAt(s, false) < 0 && c != s {
			t.Fatalf("clean(%q) = %q: changed text that needs no escaping", s, c)
		}

		e := errorLine(s)
		if i := rawAt(e, false); i >= 0 {
			t.Fatalf("errorLine(%q) = %q: raw %q at byte %d", s, e, e[i:min(i+4, len(e))], i)
		}
		if n := utf8.RuneCountInString(e); n > maxErrorLine+len([]rune(" … ")) {
			t.Fatalf("errorLine(%q): %d characters", s, n)
		}

		for _, v := range []any{s, map[string][]string{s: {s, "x"}}} {
			js, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			prefix := []byte("> ")
			out := appendSafeJSON(bytes.Clone(prefix), js)
			if !bytes.HasPrefix(out, prefix) {
				t.Fatalf("appendSafeJSON lost its dst: %q", out)
			}
			out = out[len(prefix):]
			if i := rawAt(string(out), false); i >= 0 {
				t.Fatalf("appendSafeJSON(%s) = %s: raw %q at byte %d", js, out, out[i:min(i+4, len(out))], i)
			}
			if !json.Valid(out) {
				t.Fatalf("appendSafeJSON(%s) = %s: not valid JSON", js, out)
			}
			// Decoded into a fresh value of v's type, both mean the same.
			want, got := reflect.New(reflect.TypeOf(v)), reflect.New(reflect.TypeOf(v))
			if err := json.Unmarshal(js, want.Interface()); err != nil {
				t.Fatalf("decoding %s: %v", js, err)
			}
			if err := json.Unmarshal(out, got.Interface()); err != nil {
				t.Fatalf("decoding %s: %v", out, err)
			}
			if !reflect.DeepEqual(want.Elem().Interface(), got.Elem().Interface()) {
				t.Fatalf("appendSafeJSON(%s) = %s: decodes to %#v, the input to %#v", js, out, got.Elem(), want.Elem())
			}
		}
	})
}
