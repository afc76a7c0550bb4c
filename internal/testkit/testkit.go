// Package testkit holds the few test helpers that more than one package of
// the module needs, so that each is written once: a bounded wait for an
// event and a context that ends with the test.
//
// It is imported by _test.go files only.
package testkit

import (
	"context"
	"testing"
	"time"
)

// Patience bounds every wait of a test: long enough for a loaded 2-core
// machine running the race detector, short enough that a hang fails the
// test instead of the whole run's -timeout.
const Patience = 20 * time.Second

// Eventually polls cond until it holds and reports whether it did. If it
// does not hold within Patience, the test is marked failed with what.
func Eventually(tb testing.TB, what string, cond func() bool) bool {
	tb.Helper()
	deadline := time.Now().Add(Patience)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Errorf("never happened within %v: %s", Patience, what)
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// Ctx returns a context that ends after d, or when the test ends. A d of
// zero means Patience.
func Ctx(tb testing.TB, d time.Duration) context.Context {
	if d == 0 {
		d = Patience
	}
	ctx, cancel := context.WithTimeout(tb.Context(), d)
	tb.Cleanup(cancel)
	return ctx
}
