package stream

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
)

var errIdle = errors.New("idle")

func TestWatchdogFiresAfterSilence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		start := time.Now()
		w := NewWatchdog(3*time.Second, cancel, errIdle)
		defer w.Stop()
		<-ctx.Done()
		assert.Equal(t, 3*time.Second, time.Since(start))
		assert.ErrorIs(t, context.Cause(ctx), errIdle)
	})
}

func TestWatchdogFeedPostpones(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		start := time.Now()
		w := NewWatchdog(3*time.Second, cancel, errIdle)
		defer w.Stop()
		for range 10 {
			time.Sleep(2 * time.Second)
			w.Feed()
			synctest.Wait()
			assert.NoError(t, ctx.Err())
		}
		// Paused: silence while the consumer works does not count.
		w.Pause()
		time.Sleep(time.Minute)
		assert.NoError(t, ctx.Err())
		w.Feed()
		<-ctx.Done()
		assert.Equal(t, 20*time.Second+time.Minute+3*time.Second, time.Since(start))
	})
}

func TestWatchdogStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(t.Context())
		defer cancel(nil)
		w := NewWatchdog(time.Second, cancel, errIdle)
		assert.True(t, w.Stop())
		time.Sleep(time.Hour)
		assert.NoError(t, ctx.Err())
	})
}

func TestFeedDoesNotAllocate(t *testing.T) {
	_, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	w := NewWatchdog(time.Hour, cancel, errIdle)
	defer w.Stop()
	assert.Zero(t, testing.AllocsPerRun(100, w.Feed))
}
