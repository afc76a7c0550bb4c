package thethings

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// minPlausible is the earliest local clock a Writer stamps with: a board
// without a battery-backed clock boots in 1970, and a clock earlier than
// this release was made is one that was never set.
var minPlausible = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// WithClock sets the device's clock, time.Now by default. A [Writer] stamps
// values added without a Datetime with it, unless it reads earlier than
// 2025-01-01 (a board that has no battery-backed clock and has not synced
// it yet): those values are stamped on the platform's clock instead (see
// [WithPlatformClock]). Tests use it to play a device whose clock is wrong.
// A nil now is an error.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return optionError("nil clock")
		}
		c.now = now
		return nil
	}
}

// WithPlatformClock makes a [Writer] stamp every value added without a
// Datetime on the platform's clock, even when the device's clock looks
// right. The client learns the platform's clock from the Date header of
// every answer, refined to the millisecond by [Client.ServerTime] when a
// Writer needs it; a value's age is measured on the monotonic clock, so
// neither a wrong nor a stepped device clock moves its stamp. Values added
// before the platform ever answered wait, in the Writer's buffer or spool,
// and are stamped once it does, before they are sent.
func WithPlatformClock() Option {
	return func(c *config) error {
		c.platformClock = true
		return nil
	}
}

// platformClock is what a Client learned of the platform's clock: the
// platform's time at an instant of this process's monotonic clock.
type platformClock struct {
	precise atomic.Bool // learned from ServerTime (ms), not a Date header (s)

	mu    sync.Mutex
	at    time.Time // the platform's time at mono
	mono  time.Time // time.Now() then, with its monotonic reading
	known bool
	date  string    // the last Date header not yet parsed (parsing allocates:
	dated time.Time // done only when the clock is read), and when it came
}

// observe learns from the Date header of an answer received now.
func (p *platformClock) observe(date string) {
	if date == "" || p.precise.Load() {
		return
	}
	now := time.Now()
	p.mu.Lock()
	p.date, p.dated = date, now
	p.mu.Unlock()
}

// set records that the platform's clock reads t now.
func (p *platformClock) set(t time.Time, precise bool) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setLocked(t, now, precise)
}

func (p *platformClock) setLocked(t, now time.Time, precise bool) {
	if p.precise.Load() && !precise {
		return
	}
	p.at, p.mono, p.known = t.UTC(), now, true
	if precise {
		p.precise.Store(true)
	}
}

// now returns the platform's clock now, and whether it is known. A Date
// header has whole seconds: the platform's time is taken as the middle of
// that second.
func (p *platformClock) now() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.date != "" {
		if t, err := http.ParseTime(p.date); err == nil && t.Year() >= 2000 {
			p.setLocked(t.Add(500*time.Millisecond), p.dated, false)
		}
		p.date = ""
	}
	if !p.known {
		return time.Time{}, false
	}
	return p.at.Add(time.Since(p.mono)), true
}
