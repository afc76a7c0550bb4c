package transport

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Step is how one attempt of a retry loop ended.
type Step struct {
	// Err is the attempt's failure, nil when it succeeded.
	Err error
	// Retry asks for another attempt: the failure may pass.
	Retry bool
	// RetryAfter is the wait the server asked for, if any.
	RetryAfter time.Duration
	// Reset starts the retry budget (Loop.Max) over: the attempt got
	// somewhere, e.g. a subscription was accepted.
	Reset bool
	// Lived starts the backoff over: the attempt's connection proved
	// healthy (it delivered something, or stayed up past the policy's
	// MaxWait). A connection that drops at once does not set it, so a peer
	// that accepts and drops at once meets ever longer waits.
	Lived bool
}

// End says why a retry loop stopped.
type End int

const (
	// Stopped: the last attempt asked for no retry (it succeeded, or
	// failed for good).
	Stopped End = iota
	// Spent: the retry budget is spent, the context ended, or its deadline
	// would cut the next wait short.
	Spent
	// Cut: the context ended during a wait.
	Cut
)

// Loop is the SDK's one retry loop. Every retrying part of the SDK runs
// its attempts through it: unary calls (Transport.Do), a write's read
// back and re-send, the Writer's delivery, Subscribe's and MQTT's
// reconnects. Whether an attempt may be repeated is the attempt's to say,
// by the predicates of this package (Decide, Classify); how long to wait
// is Wait's.
type Loop struct {
	Policy Policy
	// Max bounds the retries in a row (since the start or the last
	// Step.Reset); negative: no bound.
	Max int
	// Deadline makes the loop give up, rather than wait, when the
	// context's deadline would end the wait: the caller gets the last
	// attempt's result instead of a context error.
	Deadline bool
	// OnWait, if set, is told of each wait before it starts: the retry's
	// number in a row (from 1), the wait, and the attempt that failed.
	OnWait func(retry int, wait time.Duration, s Step)
}

// Run calls attempt until it asks for no retry, the budget is spent, or
// ctx ends; between attempts it waits by Wait. It returns the last
// attempt's Step and why it stopped.
func (l *Loop) Run(ctx context.Context, attempt func(context.Context) Step) (Step, End) {
	tries, n := 0, 0 // retries since the last Reset; waits since the last Lived
	var tm *time.Timer
	for {
		s := attempt(ctx)
		if !s.Retry {
			return s, Stopped
		}
		if s.Reset {
			tries = 0
		}
		if s.Lived {
			n = 0
		}
		if ctx.Err() != nil || l.Max >= 0 && tries >= l.Max {
			return s, Spent
		}
		wait := Wait(l.Policy, n, s.RetryAfter)
		if d, ok := ctx.Deadline(); ok && l.Deadline && time.Until(d) <= wait {
			return s, Spent
		}
		tries++
		n++
		if l.OnWait != nil {
			l.OnWait(tries, wait, s)
		}
		if wait <= 0 {
			continue
		}
		if tm == nil {
			tm = time.NewTimer(wait)
			defer tm.Stop()
		} else {
			tm.Reset(wait)
		}
		select {
		case <-tm.C:
		case <-ctx.Done():
			return s, Cut
		}
	}
}

// Sleep waits d, or until ctx ends (then it returns ctx's error): the one
// plain wait of the SDK, for waits that are no retry (a spool giving an
// abandoned request its time).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait is how long to wait before retry number n+1 (n from 0), the one
// wait rule of the SDK: the server's Retry-After when it gave one (> 0),
// else MinWait*2^n with equal jitter; never more than MaxWait.
func Wait(p Policy, n int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, p.MaxWait)
	}
	if p.MinWait <= 0 {
		return 0
	}
	base := p.MinWait
	for i := 0; i < n && base < p.MaxWait; i++ {
		base *= 2
	}
	base = min(base, p.MaxWait)
	half := base / 2
	if half <= 0 {
		return base
	}
	return half + rand.N(half+1)
}

// RetryAfterOf is the Retry-After of a 429 or 503 answer, or 0.
func RetryAfterOf(resp *http.Response, now time.Time) time.Duration {
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0
	}
	d, _ := RetryAfter(resp.Header.Get("Retry-After"), now)
	return d
}

// RetryAfter parses a Retry-After header: delay seconds or an HTTP date.
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		if s > int64(24*time.Hour/time.Second) {
			s = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
