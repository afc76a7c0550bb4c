package testkit

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// failRecorder records Errorf calls and forwards the rest to a real test.
type failRecorder struct {
	testing.TB
	failed bool
}

func (f *failRecorder) Errorf(string, ...any) { f.failed = true }

func TestEventually(t *testing.T) {
	n := 0
	if !Eventually(t, "third poll", func() bool { n++; return n == 3 }) || n != 3 {
		t.Fatalf("Eventually stopped after %d polls", n)
	}
	synctest.Test(t, func(t *testing.T) {
		rec := &failRecorder{TB: t}
		start := time.Now()
		if Eventually(rec, "never", func() bool { return false }) || !rec.failed {
			t.Fatal("a condition that never holds did not fail the test")
		}
		if waited := time.Since(start); waited < Patience || waited > Patience+time.Second {
			t.Fatalf("gave up after %v, want %v", waited, Patience)
		}
	})
}

func TestCtxEndsWithTheTest(t *testing.T) {
	var ctx context.Context
	t.Run("inner", func(t *testing.T) {
		ctx = Ctx(t, time.Hour)
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) < 59*time.Minute {
			t.Fatalf("deadline %v, %v", dl, ok)
		}
	})
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("ctx after its test: %v, want canceled", ctx.Err())
	}
}
