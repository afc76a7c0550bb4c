package stream

import (
	"context"
	"time"
)

// Watchdog cancels a connection whose stream stays silent too long. It runs
// no goroutine of its own: a timer calls cancel(cause) when it expires.
// Feed it on every frame; Pause it while the stream is deliberately not
// read (the consumer is busy); Stop it when the connection ends.
type Watchdog struct {
	timer *time.Timer
	idle  time.Duration
}

// NewWatchdog starts a watchdog that calls cancel(cause) after idle without
// Feed.
func NewWatchdog(idle time.Duration, cancel context.CancelCauseFunc, cause error) *Watchdog {
	return &Watchdog{idle: idle, timer: time.AfterFunc(idle, func() { cancel(cause) })}
}

// Feed restarts the idle period. It does not allocate.
func (w *Watchdog) Feed() { w.timer.Reset(w.idle) }

// Pause stops the idle period until the next Feed.
func (w *Watchdog) Pause() { w.timer.Stop() }

// Stop ends the watchdog. It reports whether it stopped the timer before it
// fired.
func (w *Watchdog) Stop() bool { return w.timer.Stop() }
