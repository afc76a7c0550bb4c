package thethings

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

// WriterStats is a snapshot of a [Writer]'s counters.
type WriterStats struct {
	// Pending is the number of values accepted and not yet known to be
	// stored or reported: buffered, in the spool, or being sent.
	Pending int64
	// Sent counts values whose request got a 2xx answer.
	Sent int64
	// Verified counts values of an ambiguous request (a lost connection, a
	// 5xx) that reading back found stored, so they were not sent again.
	Verified int64
	// Resent counts values sent again, after a refusal that stored
	// nothing or after a read back found them missing; a value sent three
	// times counts twice.
	Resent int64
	// Failed counts values reported to the error handler.
	Failed int64
	// Online is true from the first request the platform answers with
	// 2xx until one that gets no answer, a passing refusal (408, 429, a
	// rate limit, 5xx) or a pause (see [Writer]), and false before any.
	Online bool
	// LastSuccess is when a request last got a 2xx answer; zero before.
	LastSuccess time.Time
	// LastError is the last failure met, transient or not; nil until then.
	// While delivery is paused it says why.
	LastError error
}

// Writer batches values in the background: it collects values given to Add
// and writes them in requests of the batch size, when a batch is full, when
// the flush interval has passed, on Flush and on Close. It is safe for
// concurrent use. Create it with [Client.NewWriter] and always Close it.
//
// A Writer loses nothing for a passing reason, and stores nothing twice that
// carries a Datetime. Every value is stamped at Add unless it has a Datetime
// or [WithServerTimestamps] is given: with the device clock, or with the
// platform's when the device's reads before 2025 (a board that never set
// it) or [WithPlatformClock] says so; see [WithClock]. No stamp makes a
// value identical (key, millisecond, value) to another of the writer's. A
// request that stored nothing (a failed dial, 408, 429, a rate-limit 403;
// for values without a Datetime also 503 with Retry-After) is sent again
// after a capped, jittered backoff drawn from the client's [RetryPolicy]. A
// request whose outcome is ambiguous (the connection lost after sending, a
// timeout, 500, 502, 503 with or without Retry-After, which a proxy may
// answer after the platform stored, 504) is not guessed at: the writer reads each of the batch's keys back
// over the batch's time span, counts what the platform holds, and sends
// again only what is missing; if the read fails too, it tries again later,
// keeping the values. Values that cannot be read back (without a Datetime,
// of a magic key, at the last millisecond of 9999) cannot be verified: an
// ambiguous request of them is a [*WriteError] with Unknown set, unless
// [RetryPolicy.RetryWrites] sends them again blindly.
//
// Only two things end a value: the platform holds it, or the platform
// refused that value (a 400 in its JSON envelope), which is a [*WriteError]
// passed to the error handler and returned by the next Flush or Close.
// Anything else pauses delivery and keeps the values: a refusal of the
// thing (401, 403 other than a rate limit, 404 thing or token not found)
// or an answer that is not the platform's (no JSON envelope: a proxy's or
// a wrong URL's page). While paused, [Writer.Stats] reports Online false
// and the reason in LastError, the error handler is called once with a
// [*WriteError] without values whose Err matches the refusal
// ([ErrThingNotFound], [ErrUnauthorized], ...), and the writer tries again
// with the policy's backoff, capped at MaxWait, until the refusal ends.
// Flush and Close then wait until their context ends; Close reports what
// was not sent (with a spool, leaves it there for the next writer).
//
// While the platform cannot be reached the values stay in the buffer
// (bounded by [WithMaxBuffered]) or in the spool ([WithSpool]), and Add
// waits for room when it is full; [Writer.Stats] tells how many wait.
type Writer struct {
	c     *Client
	cfg   writerConfig
	wc    writeConfig     // the route is built per request: no field holds the token
	buf   buffer          // in memory or in a spool
	ctx   context.Context // the requests' context, cancelled to abort
	abort context.CancelFunc
	kick  chan struct{} // wakes the sender
	done  chan struct{} // closed when the sender has returned

	mu       sync.Mutex
	taken    int64         // values ever accepted
	idle     bool          // the sender waits for a kick
	resolved int64         // values written or reported
	adding   int           // Adds put in the buffer, not yet committed
	flushTo  int64         // send partial batches until resolved reaches this
	errs     []error       // *WriteErrors not yet returned by Flush or Close
	changed  chan struct{} // closed and replaced whenever the state above changes
	closing  bool
	closeErr error
	closed   bool  // closeErr is set
	pauseErr error // why delivery is paused (the thing refused...), or nil
	stats    WriterStats
	cur      *delivery // the batch being delivered, if any

	handling atomic.Bool // the error handler runs (Close may be called from it)

	// Values waiting for the platform's clock (see settle), oldest first,
	// under mu; written counts the values ever put in the buffer, so that
	// each has a sequence number.
	waiting  []waitStamp
	written  int64
	deferred atomic.Int64 // waiting values not yet stamped
	refined  bool         // settle asked ServerTime for the platform's clock

	seen    atomic.Int64 // the latest clock reading stamps used (ms)
	stampMu sync.Mutex
	last    map[string]stamp // per key, the last millisecond stamped
	ahead   map[ident]int    // values the caller dated at or after the clock
}

// NewWriter returns a batching writer for this client's thing. It starts
// one goroutine, which Close ends. See [Writer] for the defaults. An invalid
// option is an error matching [ErrInvalidOption]; with [WithSpool], a spool
// that cannot be opened, is in use or is corrupt is an error too.
func (c *Client) NewWriter(opts ...WriterOption) (*Writer, error) {
	cfg := writerConfig{batchSize: defaultBatchSize, interval: defaultFlushInterval, maxBuffered: defaultMaxBuffered, spoolLimit: defaultSpoolLimit}
	for _, o := range opts {
		if o == nil {
			return nil, optionError("nil writer option")
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.spoolDir == "" && cfg.maxBuffered < cfg.batchSize {
		return nil, optionError("max buffered %d below batch size %d", cfg.maxBuffered, cfg.batchSize)
	}
	if cfg.spoolDir != "" && cfg.serverTime {
		return nil, optionError("a spool needs values with a Datetime: WithServerTimestamps cannot be combined with WithSpool")
	}
	wc, err := newWriteConfig(cfg.writeOpts)
	if err != nil {
		return nil, err
	}
	w := &Writer{c: c, cfg: cfg, wc: wc, changed: make(chan struct{}), done: make(chan struct{})}
	if cfg.spoolDir == "" {
		w.buf = newMemBuffer(cfg.maxBuffered)
	} else if w.buf, err = openSpool(c, cfg); err != nil {
		return nil, err
	}
	n := int64(w.buf.held())
	w.taken, w.flushTo = n, n // send what a previous writer left at once
	w.written = n
	w.ctx, w.abort = context.WithCancel(context.Background())
	w.kick = make(chan struct{}, 1)
	go w.run()
	return w, nil
}

// Stats returns a snapshot of the writer's counters.
func (w *Writer) Stats() WriterStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Pending = max(w.taken-w.resolved, 0)
	return s
}

// Add hands values to the writer. They are validated first, like [Client.Write]
// does: a bad value is a [*WriteError] naming it, and nothing is taken. When
// the buffer has no room for all of them, Add waits until it has, or until ctx
// ends: then it returns an error wrapping ctx's error and takes nothing. Add
// after Close returns [ErrWriterClosed]. On success all the values are taken
// (with a spool: durably): their fate is reported by the writer. Values (and
// what they point to, but Geo, which is copied) must not be modified after
// Add.
//
// ctx bounds only the wait for room. With a spool, once the values are
// written Add waits for their sync whatever ctx does, so that its answer is
// the truth: nil means taken, an error wrapping ctx's error means not taken
// (add them again), never "not taken" for values that will be sent. Only a
// failure of the disk itself (an error that does not wrap ctx's) leaves the
// values' fate open: they may be in the spool, and the writer takes nothing
// more.
func (w *Writer) Add(ctx context.Context, values ...Value) error {
	if err := checkContext(ctx); err != nil {
		return err
	}
	if len(values) == 0 {
		if w.isClosing() {
			return ErrWriterClosed
		}
		return nil
	}
	geos, err := validateValues(values)
	if err != nil {
		return &WriteError{Values: slices.Clone(values), Err: err}
	}
	var st stamped
	if !w.cfg.serverTime {
		st = w.stamps(values)
	}
	// Handing the caller's slice to the buffer, an interface, would make
	// every Add allocate it (escape analysis cannot see that no buffer
	// keeps it): a pooled copy goes instead.
	held := addPool.Get().(*[]Value)
	*held = append((*held)[:0], values...)
	defer func() {
		clear(*held)
		addPool.Put(held)
	}()
	t, err := w.buf.prepare(*held, geos, st.times)
	if err != nil {
		return &WriteError{Values: slices.Clone(values), Err: err}
	}
	for {
		w.mu.Lock()
		if w.closing {
			w.mu.Unlock()
			return ErrWriterClosed
		}
		ticket, room, err := w.buf.put(t)
		if err != nil {
			w.mu.Unlock()
			return err
		}
		if room != nil {
			// Full: send what waits, even a partial batch. Close ends the
			// wait too (changed).
			w.flushTo = max(w.flushTo, w.taken)
			changed := w.changed
			w.mu.Unlock()
			w.wake()
			select {
			case <-room:
				continue
			case <-changed:
				continue
			case <-ctx.Done():
				return errorf("thethings: writer buffer full, %s not taken: %w", countValues(len(values)), ctx.Err())
			}
		}
		w.queueLocked(st.wait, len(values))
		if ticket != 0 {
			// The buffer keeps them (durably) outside the lock.
			w.adding++
			w.mu.Unlock()
			err = w.buf.commit(ticket)
			w.mu.Lock()
			w.adding--
		}
		if err == nil {
			w.taken += int64(len(values))
		}
		// Wake the sender, if it waits, for a full batch; and once the last
		// Add a Close waits for is in, both of them.
		wake := w.idle && w.taken-w.resolved >= int64(w.cfg.batchSize)
		if w.closing && w.adding == 0 {
			wake = true
			w.broadcastLocked()
		}
		w.idle = w.idle && !wake
		w.mu.Unlock()
		if wake {
			w.wake()
		}
		return err
	}
}

// addPool holds the copies of the values Add hands its buffer.
var addPool = sync.Pool{New: func() any { return new([]Value) }}

// validateValues checks values as Write does and returns copies of their
// positions, in order, for the writer to own.
func validateValues(values []Value) ([]Geo, error) {
	var geos []Geo
	for i := range values {
		if err := checkItem(&values[i]); err != nil {
			return nil, &wire.ItemError{Index: i, Key: values[i].Key, Err: err}
		}
		if g := values[i].Geo; g != nil {
			if geos == nil {
				geos = make([]Geo, 0, len(values)-i)
			}
			geos = append(geos, *g)
		}
	}
	return geos, nil
}

func (w *Writer) isClosing() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closing
}

// Flush sends every value added before it and waits until each has been
// written or reported. It returns the [*WriteError]s met since the last Flush
// or Close, joined with errors.Join, or nil. Values refused for a passing
// reason are still being retried while Flush waits; if ctx ends first, Flush
// returns an error wrapping ctx's error, and those values stay buffered. After
// Close, Flush returns [ErrWriterClosed].
func (w *Writer) Flush(ctx context.Context) error {
	if err := checkContext(ctx); err != nil {
		return err
	}
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return ErrWriterClosed
	}
	target := w.taken
	w.flushTo = max(w.flushTo, target)
	w.mu.Unlock()
	w.wake()
	for {
		w.mu.Lock()
		if w.resolved >= target || w.closed {
			errs := w.errs
			w.errs = nil
			if w.resolved < target {
				errs = append(errs, errorf("thethings: flush: closed meanwhile, Close reports the rest: %w", ErrWriterClosed))
			}
			w.mu.Unlock()
			return errors.Join(errs...)
		}
		changed := w.changed
		w.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			w.mu.Lock()
			errs := w.errs
			w.errs = nil
			w.mu.Unlock()
			return errors.Join(append(errs, errorf("thethings: flush: %w", ctx.Err()))...)
		}
	}
}

// Close stops taking values, sends everything buffered, and ends the writer's
// goroutine. It returns the [*WriteError]s not yet returned by Flush, joined
// with errors.Join. If ctx ends before everything was sent, Close aborts the
// request in flight and returns, besides, a WriteError listing every value
// still unsent (and one marked Unknown for a request cut while in flight), so
// nothing is lost silently; with a spool, those values stay in it instead,
// for the next writer on the same dir, and the error says how many.
// Close is idempotent and safe to call from many goroutines: every call
// waits for the same end and returns the same result.
func (w *Writer) Close(ctx context.Context) error {
	if err := checkContext(ctx); err != nil {
		return err
	}
	w.mu.Lock()
	if !w.closing {
		w.closing = true
		w.flushTo = w.taken
		w.broadcastLocked()
	}
	w.mu.Unlock()
	w.wake()
	select {
	case <-w.done:
	case <-ctx.Done():
		w.abort()
		if !w.handling.Load() {
			<-w.done
		}
		// Else Close was called from the error handler, on the writer's
		// goroutine, which ends as soon as the handler returns.
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.adding > 0 {
		// Adds writing to the spool finish their sync (it is short) before
		// the spool is closed: each then tells the truth.
		changed := w.changed
		w.mu.Unlock()
		<-changed
		w.mu.Lock()
	}
	if !w.closed {
		errs := w.errs
		w.errs = nil
		cause := ctx.Err()
		if cause == nil {
			cause = context.Canceled
		}
		if w.pauseErr != nil {
			cause = errorf("%w (delivery paused: %w)", cause, w.pauseErr)
		}
		left, reported := w.buf.close(cause, w.cur)
		errs = append(errs, left...)
		w.resolved += int64(reported)
		w.waiting = nil
		w.cur = nil
		w.closeErr = errors.Join(errs...)
		w.closed = true
		w.broadcastLocked()
	}
	return w.closeErr
}

func (w *Writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// broadcastLocked wakes everyone waiting for a change. w.mu is held.
func (w *Writer) broadcastLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// run is the writer's goroutine: it delivers batches until closed and
// drained, or aborted.
func (w *Writer) run() {
	defer close(w.done)
	var tick <-chan time.Time
	if w.cfg.interval > 0 {
		t := time.NewTicker(w.cfg.interval)
		defer t.Stop()
		tick = t.C
	}
	// A previous writer may have been sending the first batch when it
	// stopped: once that request is over, read it back before sending it.
	if k, err := w.buf.inFlight(w.ctx); err != nil {
		return
	} else if k > 0 && !w.deliver(w.next(k, true)) {
		return
	}
	for {
		w.mu.Lock()
		pending := w.taken - w.resolved
		if w.ctx.Err() != nil || (w.closing && pending <= 0 && w.adding == 0) {
			w.mu.Unlock()
			return
		}
		k := 0
		if pending > 0 && (pending >= int64(w.cfg.batchSize) || w.resolved < w.flushTo || w.closing) {
			k = int(min(pending, int64(w.cfg.batchSize)))
		}
		w.idle = k == 0
		w.mu.Unlock()
		if k > 0 {
			if !w.stampWaiting() {
				return
			}
			w.mu.Lock()
			k = w.readyLocked(k)
			w.mu.Unlock()
			if k > 0 && !w.deliver(w.next(k, false)) {
				return
			}
			continue
		}
		select {
		case <-w.kick:
		case <-tick:
			w.mu.Lock()
			w.flushTo = max(w.flushTo, w.taken)
			w.mu.Unlock()
		case <-w.ctx.Done():
		}
	}
}

// next takes the k oldest values as the next batch.
func (w *Writer) next(k int, verify bool) *delivery {
	w.mu.Lock()
	start := w.resolved
	w.mu.Unlock()
	batch, err := w.buf.next(k)
	w.applyStamps(batch, start)
	d := &delivery{c: w.c, wc: w.wc, orig: batch, retryWrites: w.c.retry.RetryWrites}
	d.start(verify)
	if err != nil {
		d.broken = err
	}
	return d
}

// deliver sends d until the platform holds its values or refused them for
// good, waiting between attempts. It reports false when the writer was
// aborted, leaving the values where they are.
func (w *Writer) deliver(d *delivery) bool {
	if d.broken != nil {
		// The spool cannot be read: stop rather than skip values or spin.
		// They stay in it, and opening it again names the damage.
		w.mu.Lock()
		w.stats.LastError = d.broken
		w.errs = append(w.errs, d.broken)
		w.broadcastLocked()
		w.mu.Unlock()
		return false
	}
	if len(d.orig) == 0 {
		return true
	}
	w.mu.Lock()
	w.cur = d
	w.mu.Unlock()
	// A batch is sent again, after the client's waits, until the platform
	// holds it or refused it for good, or the writer is aborted.
	loop := transport.Loop{Policy: w.c.tr.Policy, Max: -1}
	delivered := false
	loop.Run(w.ctx, func(ctx context.Context) transport.Step {
		r, ackErr := w.step(ctx, d)
		if r.done && ackErr == nil {
			ackErr = w.buf.done(len(d.orig))
		}
		w.mu.Lock()
		w.stats.Sent += int64(r.sent)
		w.stats.Verified += int64(r.verified)
		w.stats.Resent += int64(r.resent)
		if r.err != nil {
			w.stats.LastError = r.err
		}
		switch {
		case r.ok:
			w.stats.Online = true
			w.stats.LastSuccess = time.Now()
		case r.transient || r.paused:
			w.stats.Online = false
		}
		failed := r.failed
		switch {
		case r.paused && w.pauseErr == nil:
			// Once per pause: the values stay, the handler hears why.
			failed = append(failed, &WriteError{Err: errorf("thethings: delivery paused, %s kept: %w", countValues(int(w.taken-w.resolved)), r.err)})
			fallthrough
		case r.paused:
			w.pauseErr = r.err
		case r.err == nil:
			w.pauseErr = nil
		}
		for _, f := range r.failed {
			w.stats.Failed += int64(len(f.Values))
			w.stats.LastError = f
			w.errs = append(w.errs, f)
		}
		if ackErr != nil {
			w.stats.LastError = ackErr
			w.errs = append(w.errs, ackErr)
		}
		w.mu.Unlock()
		// The handler hears of the batch's failures before a Flush waiting
		// for the batch returns them.
		if h := w.cfg.onError; h != nil && len(failed) > 0 {
			w.handling.Store(true)
			for _, f := range failed {
				h(f)
			}
			w.handling.Store(false)
		}
		w.mu.Lock()
		if r.done {
			w.resolved += int64(len(d.orig))
			w.cur = nil
		}
		w.broadcastLocked()
		w.mu.Unlock()
		if ackErr != nil {
			// The spool can no longer record progress: stop rather than
			// send values twice.
			return transport.Step{Err: ackErr}
		}
		delivered = r.done
		return transport.Step{Err: r.err, Retry: !r.done, RetryAfter: r.retryAfter}
	})
	return delivered
}

// step does one step of d, within the time the buffer gives it.
func (w *Writer) step(ctx context.Context, d *delivery) (stepResult, error) {
	until, err := w.buf.sending()
	if err != nil {
		return stepResult{}, err
	}
	if !until.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, until)
		defer cancel()
	}
	return d.step(ctx), nil
}
