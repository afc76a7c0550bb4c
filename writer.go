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
	// Online is false from a request that got no answer from the platform
	// or a transient refusal (429, 5xx) until the next one that succeeds.
	Online bool
	// LastError is the last failure met, transient or not; nil until then.
	LastError error
}

// Writer batches values in the background: it collects values given to Add
// and writes them in requests of the batch size, when a batch is full, when
// the flush interval has passed, on Flush and on Close. It is safe for
// concurrent use. Create it with [Client.NewWriter] and always Close it.
//
// A Writer loses nothing for a passing reason, and stores nothing twice that
// carries a Datetime. Every value is stamped at Add with the device clock
// unless it has a Datetime or [WithServerTimestamps] is given. A request
// that stored nothing (a failed dial, 429, 503 with Retry-After) is sent
// again after a capped, jittered backoff drawn from the client's
// [RetryPolicy]. A request whose outcome is ambiguous (the connection lost
// after sending, a timeout, 500, 502, 503, 504) is not guessed at: the
// writer reads each of the batch's keys back over the batch's time span,
// counts what the platform holds, and sends again only what is missing; if
// the read fails too, it tries again later, keeping the values. Only a
// permanent refusal (400, 401, 404) ends in a [*WriteError], passed to the
// error handler and returned by the next Flush or Close. Values without a
// Datetime cannot be verified: an ambiguous request of them is a
// [*WriteError] with Unknown set, unless [RetryPolicy.RetryWrites] sends
// them again blindly.
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
	resolved int64         // values written or reported
	adding   int           // Adds put in the buffer, not yet committed
	flushTo  int64         // send partial batches until resolved reaches this
	errs     []error       // *WriteErrors not yet returned by Flush or Close
	changed  chan struct{} // closed and replaced whenever the state above changes
	closing  bool
	closeErr error
	closed   bool // closeErr is set
	stats    WriterStats
	cur      *delivery // the batch being delivered, if any

	handling atomic.Bool // the error handler runs (Close may be called from it)

	stampMu sync.Mutex
	last    map[string]stamp // per key, the last millisecond stamped
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
	w.stats.Online = true
	if cfg.spoolDir == "" {
		w.buf = newMemBuffer(cfg.maxBuffered)
	} else if w.buf, err = openSpool(c, cfg); err != nil {
		return nil, err
	}
	n := int64(w.buf.held())
	w.taken, w.flushTo = n, n // send what a previous writer left at once
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
	var stamps []time.Time
	if !w.cfg.serverTime {
		stamps = w.stamps(values)
	}
	t, err := w.buf.prepare(values, geos, stamps)
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
		w.adding++
		w.mu.Unlock()
		err = w.buf.commit(ticket)
		w.mu.Lock()
		w.adding--
		if err == nil {
			w.taken += int64(len(values))
		}
		wake := w.adding == 0 || w.taken-w.resolved >= int64(w.cfg.batchSize)
		w.broadcastLocked()
		w.mu.Unlock()
		if wake {
			w.wake()
		}
		return err
	}
}

// taking is values on their way into a buffer, as prepare made them.
type taking struct {
	n      int
	values []Value
	geos   []Geo
	stamps []time.Time
	recs   []byte // as spool records
}

// buffer holds the values a Writer took and has not resolved, oldest
// first: in memory (memBuffer) or in a spool (spoolBuffer).
type buffer interface {
	// prepare readies values for put, outside the writer's lock.
	prepare(values []Value, geos []Geo, stamps []time.Time) (taking, error)
	// put takes t unless there is no room: then room is closed when there
	// may be some. The writer's lock is held.
	put(t taking) (ticket int64, room <-chan struct{}, err error)
	// commit waits until what put took with ticket is kept (durable).
	commit(ticket int64) error
	// next returns the next batch: up to k of the oldest values not yet in
	// one (a batch is done before the next is taken).
	next(k int) ([]Value, error)
	// done removes the n oldest values: they are resolved.
	done(n int) error
	// held is how many values it held when opened: a previous writer's.
	held() int
	// inFlight is how many of those a previous writer may have been
	// sending, to be read back before they are sent; it returns once no
	// request of that writer can still be carried out.
	inFlight(ctx context.Context) (int, error)
	// sending is called before each delivery step, which must end by the
	// time it returns (zero: no bound).
	sending() (time.Time, error)
	// close ends the buffer: errors for what it still held, and how many
	// values those errors report.
	close(cause error, cur *delivery) (errs []error, reported int)
}

// maxPerMilli is how many values of one key the writer stamps with the same
// millisecond: reading back a span with more than a page of values at one
// millisecond could not get past them.
const maxPerMilli = 100

// stamp is the last millisecond given to a key and the values (as their
// canonical JSON) that got it.
type stamp struct {
	ms   int64
	vals []string
}

// stamps returns the Datetime of each value, or nil if every value has its
// own: a value's own, or the device clock
// (UTC, milliseconds), moved to the next millisecond for a key that already
// has maxPerMilli values, or one equal to this value, at this one. Two
// identical values of a key never share a stamp: a read back could not
// tell them apart across batches.
func (w *Writer) stamps(values []Value) []time.Time {
	if !slices.ContainsFunc(values, func(v Value) bool { return v.Datetime.IsZero() }) {
		return nil // every value has its own: nothing to allocate
	}
	now := time.Now().UnixMilli()
	out := make([]time.Time, len(values))
	w.stampMu.Lock()
	defer w.stampMu.Unlock()
	if w.last == nil {
		w.last = map[string]stamp{}
	}
	for i := range values {
		if !values[i].Datetime.IsZero() {
			out[i] = values[i].Datetime
			continue
		}
		id, _ := identOf("", time.Time{}, values[i].Value) // validated: no error
		st := w.last[values[i].Key]
		switch {
		case st.ms < now:
			st = stamp{ms: now, vals: st.vals[:0]}
		case len(st.vals) >= maxPerMilli || slices.Contains(st.vals, id.value):
			st = stamp{ms: st.ms + 1, vals: st.vals[:0]}
		}
		st.vals = append(st.vals, id.value)
		w.last[values[i].Key] = st
		out[i] = time.UnixMilli(st.ms).UTC()
	}
	if len(w.last) > 10000 {
		// Many keys: forget those stamped in the past, which the clock
		// cannot give again (unless it jumps back).
		for k, st := range w.last {
			if st.ms < now {
				delete(w.last, k)
			}
		}
	}
	return out
}

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
		left, reported := w.buf.close(cause, w.cur)
		errs = append(errs, left...)
		w.resolved += int64(reported)
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
		w.mu.Unlock()
		if k > 0 {
			if !w.deliver(w.next(k, false)) {
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
	batch, err := w.buf.next(k)
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
	wait := time.NewTimer(time.Hour)
	defer wait.Stop()
	for attempt := 0; ; attempt++ {
		r, ackErr := w.step(d)
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
		case r.transient:
			w.stats.Online = false
		case r.answered:
			w.stats.Online = true
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
		if r.done {
			w.resolved += int64(len(d.orig))
			w.cur = nil
		}
		w.broadcastLocked()
		w.mu.Unlock()
		if h := w.cfg.onError; h != nil && len(r.failed) > 0 {
			w.handling.Store(true)
			for _, f := range r.failed {
				h(f)
			}
			w.handling.Store(false)
		}
		if ackErr != nil {
			// The spool can no longer record progress: stop rather than
			// send values twice.
			return false
		}
		if r.done {
			return true
		}
		if w.ctx.Err() != nil {
			return false
		}
		wait.Reset(transport.Wait(w.c.tr.Policy, attempt, r.retryAfter))
		select {
		case <-wait.C:
		case <-w.ctx.Done():
			return false
		}
	}
}

// step does one step of d, within the time the buffer gives it.
func (w *Writer) step(d *delivery) (stepResult, error) {
	until, err := w.buf.sending()
	if err != nil {
		return stepResult{}, err
	}
	ctx := w.ctx
	if !until.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, until)
		defer cancel()
	}
	return d.step(ctx), nil
}
