package thethings

import (
	"context"
	"errors"
	"testing"
)

// An option of every option type can fail, and the call it is passed to
// returns its error before any I/O.
func TestWriteOptionReturnsError(t *testing.T) {
	t.Parallel()
	c, err := NewClient("token", WithBaseURL("http://127.0.0.1:1/"), WithRetry(NoRetries))
	if err != nil {
		t.Fatal(err)
	}
	bad := WriteOption(func(*writeConfig) error { return optionError("refused") })
	err = c.Write(context.Background(), []Value{{Key: "k", Value: 1}}, bad)
	var we *WriteError
	if !errors.Is(err, ErrInvalidOption) || !errors.As(err, &we) || len(we.Values) != 1 || we.Unknown {
		t.Fatalf("got %v", err)
	}
}
