package wire

import (
	"fmt"
	"strings"
)

// Prefix starts every error message of the SDK, once.
const Prefix = "thethings: "

// Errorf is fmt.Errorf for the SDK's errors: a message that starts with
// Prefix keeps that one and loses the ones the errors it wraps bring
// ("thethings: read answer: thethings: invalid value" reads
// "thethings: read answer: invalid value"). Wrapped errors stay matchable
// with errors.Is and errors.As.
func Errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	msg := err.Error()
	if one := OnePrefix(msg); one != msg {
		return &prefixed{msg: one, err: err}
	}
	return err
}

// OnePrefix returns msg without the repeats of Prefix after its first,
// when msg starts with it.
func OnePrefix(msg string) string {
	rest, ok := strings.CutPrefix(msg, Prefix)
	if !ok || !strings.Contains(rest, Prefix) {
		return msg
	}
	return Prefix + strings.ReplaceAll(rest, Prefix, "")
}

// prefixed is an error whose text was rid of repeated prefixes.
type prefixed struct {
	msg string
	err error
}

func (e *prefixed) Error() string { return e.msg }
func (e *prefixed) Unwrap() error { return e.err }
