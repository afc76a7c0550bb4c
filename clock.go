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
