package main

import (
	"strings"
	"testing"
	"unicode"
)

// What a device or the platform sent reaches the terminal escaped: no
// escape sequence (here OSC 52, which writes the clipboard), BEL, C1 CSI
// or bidi override gets through; newlines and tabs do.
func TestPrintableEscapesTerminalControls(t *testing.T) {
	got := printable("door \x1b]52;c;aGk=\x07open\u009b2J\u202e\n\tok \xff")
	for _, r := range got {
		if r != '\n' && r != '\t' && (unicode.IsControl(r) || r >= 0x202a && r <= 0x202e) {
			t.Fatalf("printable left %U in %q", r, got)
		}
	}
	for _, want := range []string{`\u001b`, `\u0007`, `\u009b`, `\u202e`, `\ufffd`, "\n\tok"} {
		if !strings.Contains(got, want) {
			t.Errorf("printable(...) = %q, want %q in it", got, want)
		}
	}
}
