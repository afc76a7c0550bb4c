package thethings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

// Writer defaults.
const (
	defaultFlushInterval = time.Second
	defaultMaxBuffered   = 10000
	defaultSpoolLimit    = 256 << 20
)

// WriterOption configures a [Writer]. An invalid option makes
// [Client.NewWriter] return an error matching [ErrInvalidOption].
type WriterOption func(*writerConfig) error

type writerConfig struct {
	batchSize   int
	interval    time.Duration
	maxBuffered int
	writeOpts   []WriteOption
	onError     func(*WriteError)
	spoolDir    string
	spoolLimit  int64
	serverTime  bool
}

// WithBatchSize sets how many values go in one request: 1..1000, default 100.
// A full batch is sent at once.
func WithBatchSize(n int) WriterOption {
	return func(c *writerConfig) error {
		if n < 1 || n > maxBatchSize {
			return optionError("batch size %d out of range 1..%d", n, maxBatchSize)
		}
		c.batchSize = n
		return nil
	}
}

// WithFlushInterval sets how long a value may wait in the buffer for its
// batch to fill: default 1s. Zero disables timed flushes (values then go
// out when a batch is full, on Flush and on Close). Negative is invalid.
func WithFlushInterval(d time.Duration) WriterOption {
	return func(c *writerConfig) error {
		if d < 0 {
			return optionError("negative flush interval %s", d)
		}
		c.interval = d
		return nil
	}
}

// WithMaxBuffered bounds the values held in memory by the writer, including
// those being sent: default 10,000, at least the batch size. When the buffer
// is full, Add waits for room (or for its context to end). A spooled writer
// is bounded by [WithSpoolLimit] instead.
func WithMaxBuffered(n int) WriterOption {
	return func(c *writerConfig) error {
		if n < 1 {
			return optionError("max buffered %d must be positive", n)
		}
		c.maxBuffered = n
		return nil
	}
}

// WithWriteOptions applies write options (WithStore, WithBroadcast) to every
// request of the writer.
func WithWriteOptions(opts ...WriteOption) WriterOption {
	return func(c *writerConfig) error {
		c.writeOpts = append(c.writeOpts, opts...)
		return nil
	}
}

// WithErrorHandler sets a function called with every [*WriteError] of the
// writer: values the platform refused for good (400, 401, 404), and values
// without a Datetime whose request's outcome is unknown. It runs on the
// writer's goroutine, which waits for it: it must not block for long and
// must not call Flush or Close. The same errors are also returned by the
// next Flush or Close.
func WithErrorHandler(f func(*WriteError)) WriterOption {
	return func(c *writerConfig) error {
		c.onError = f
		return nil
	}
}

// WithServerTimestamps leaves the Datetime of values added without one
// zero, so that the platform stamps them when it stores them. By default
// the writer stamps each such value at Add with the device clock (UTC,
// milliseconds), which lets it verify an ambiguous write instead of
// guessing: see [Writer]. Values without a Datetime cannot be verified. It
// cannot be combined with [WithSpool].
func WithServerTimestamps() WriterOption {
	return func(c *writerConfig) error {
		c.serverTime = true
		return nil
	}
}

// WithSpool keeps the writer's buffer in dir, on disk, instead of in
// memory: Add returns once its values are durable (concurrent Adds share
// one sync), and values leave the spool only once the platform is known to
// hold them. A writer opened again on the same dir, after Close or after
// the process died at any instant, sends every value accepted and not yet
// confirmed, exactly once. The directory is created if needed and belongs
// to the writer: a file in it that the writer did not make is an error, as
// is a second writer on the same dir while the first is open. See
// [WithSpoolLimit] for its bound.
func WithSpool(dir string) WriterOption {
	return func(c *writerConfig) error {
		if dir == "" {
			return optionError("empty spool directory")
		}
		c.spoolDir = dir
		return nil
	}
}

// WithSpoolLimit bounds the bytes of values waiting in the spool: default
// 256 MiB, at least 64 KiB. When it is full, Add waits for room (or for its
// context to end).
func WithSpoolLimit(bytes int64) WriterOption {
	return func(c *writerConfig) error {
		if bytes < 64<<10 {
			return optionError("spool limit %d below 64 KiB", bytes)
		}
		c.spoolLimit = bytes
		return nil
	}
}

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
	sp    *spool          // nil: the buffer is in memory
	ctx   context.Context // the requests' context, cancelled to abort
	abort context.CancelFunc
	kick  chan struct{} // wakes the sender
	done  chan struct{} // closed when the sender has returned

	mu       sync.Mutex
	buf      ring          // in memory: unresolved values, oldest first
	taken    int64         // values ever accepted
	resolved int64         // values written or reported
	adding   int           // spooled Adds written but not yet durable
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
	if cfg.spoolDir != "" {
		if w.sp, err = openSpool(cfg.spoolDir, cfg.spoolLimit, cfg.batchSize); err != nil {
			return nil, err
		}
		n := int64(w.sp.pending())
		w.taken, w.flushTo = n, n // send what a previous writer left at once
	}
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
	if w.sp == nil && len(values) > w.cfg.maxBuffered {
		return &WriteError{Values: slices.Clone(values), Err: errorf("thethings: %d values cannot fit in a writer buffer of %d: %w", len(values), w.cfg.maxBuffered, ErrInvalidValue)}
	}
	geos, err := validateValues(values)
	if err != nil {
		return &WriteError{Values: slices.Clone(values), Err: err}
	}
	var stamps []time.Time
	if !w.cfg.serverTime {
		stamps = w.stamps(values)
	}
	if w.sp != nil {
		return w.addSpooled(ctx, values, stamps)
	}
	for {
		w.mu.Lock()
		if w.closing {
			w.mu.Unlock()
			return ErrWriterClosed
		}
		if w.buf.n+len(values) <= w.cfg.maxBuffered {
			w.buf.push(values, geos, stamps)
			w.taken += int64(len(values))
			full := w.buf.n >= w.cfg.batchSize
			w.mu.Unlock()
			if full {
				w.wake()
			}
			return nil
		}
		changed := w.changed
		w.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return errorf("thethings: writer buffer full, %s not taken: %w", countValues(len(values)), ctx.Err())
		}
	}
}

// addSpooled appends values to the spool and waits until they are durable.
func (w *Writer) addSpooled(ctx context.Context, values []Value, stamps []time.Time) error {
	recs, err := encodeRecords(values, stamps)
	if err != nil {
		return &WriteError{Values: slices.Clone(values), Err: err}
	}
	if int64(len(recs)) > w.sp.limit {
		return &WriteError{Values: slices.Clone(values), Err: errorf("thethings: %d bytes of values cannot fit in a spool of %d: %w", len(recs), w.sp.limit, ErrInvalidValue)}
	}
	for {
		w.mu.Lock()
		if w.closing {
			w.mu.Unlock()
			return ErrWriterClosed
		}
		ticket, room, err := w.sp.write(recs, len(values))
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
				return errorf("thethings: writer spool full, %s not taken: %w", countValues(len(values)), ctx.Err())
			}
		}
		w.adding++
		w.mu.Unlock()
		err = w.sp.sync(ticket)
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

// ring is a FIFO of values in a circular buffer that grows as needed.
type ring struct {
	buf  []Value
	head int // index of the oldest value
	n    int // number of values
}

// push appends values, pointing their Geo at the copies in geos (one per
// non-nil Geo, in order) and giving those without a Datetime theirs from
// stamps, if not nil.
func (r *ring) push(values []Value, geos []Geo, stamps []time.Time) {
	if r.n+len(values) > len(r.buf) {
		grown := make([]Value, max(2*len(r.buf), r.n+len(values), 64))
		r.copyTo(grown, r.n)
		r.buf, r.head = grown, 0
	}
	for i := range values {
		v := values[i]
		if v.Geo != nil {
			v.Geo = &geos[0]
			geos = geos[1:]
		}
		if v.Datetime.IsZero() && stamps != nil {
			v.Datetime = stamps[i]
		}
		r.buf[(r.head+r.n)%len(r.buf)] = v
		r.n++
	}
}

// copyTo copies the k oldest values to dst.
func (r *ring) copyTo(dst []Value, k int) {
	if k == 0 {
		return
	}
	end := min(r.head+k, len(r.buf))
	c := copy(dst, r.buf[r.head:end])
	copy(dst[c:k], r.buf)
}

// first returns a copy of the k oldest values.
func (r *ring) first(k int) []Value {
	out := make([]Value, k)
	r.copyTo(out, k)
	return out
}

// drop removes the k oldest values.
func (r *ring) drop(k int) {
	for i := 0; i < k; i++ {
		r.buf[(r.head+i)%len(r.buf)] = Value{}
	}
	if r.n -= k; r.n == 0 {
		r.head = 0
	} else {
		r.head = (r.head + k) % len(r.buf)
	}
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
		if w.sp != nil {
			if left := w.sp.pending(); left > 0 {
				errs = append(errs, errorf("thethings: writer closed with %s left in the spool, sent by the next writer on it: %w", countValues(left), cause))
			}
			if err := w.sp.close(); err != nil {
				errs = append(errs, err)
			}
		} else {
			if d := w.cur; d != nil && d.maybe {
				if vals := d.unresolved(); len(vals) > 0 {
					errs = append(errs, &WriteError{Values: vals, Unknown: true, Err: errorf("thethings: writer closed while a request was in flight: %w", cause)})
				}
				w.buf.drop(len(d.orig))
			}
			if w.buf.n > 0 {
				errs = append(errs, &WriteError{
					Values: w.buf.first(w.buf.n),
					Err:    errorf("thethings: writer closed before sending: %w", cause),
				})
				w.buf = ring{}
			}
			w.resolved = w.taken // every value is reported: none pending
		}
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
	if w.sp != nil && w.sp.pending() > 0 {
		// A previous writer may have been sending the first batch when it
		// stopped: read it back before sending it.
		if !w.deliver(w.next(w.sp.inFlight(w.cfg.batchSize), true)) {
			return
		}
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
	var batch []Value
	var err error
	if w.sp != nil {
		batch, err = w.sp.next(k)
	} else {
		w.mu.Lock()
		batch = w.buf.first(min(k, w.buf.n))
		w.mu.Unlock()
	}
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
		r := d.step(w.ctx)
		var ackErr error
		if r.done && w.sp != nil {
			ackErr = w.sp.ack(len(d.orig), w.cfg.batchSize)
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
			if w.sp == nil {
				w.buf.drop(len(d.orig))
			}
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

// delivery follows one batch from its first request until the platform is
// known to hold each value or refused it for good. Values with a Datetime
// are identified by (key, millisecond, value): an ambiguous outcome is
// resolved by reading the batch's keys back, never by guessing.
type delivery struct {
	c           *Client
	wc          writeConfig // the route is built per request: no field holds the token
	orig        []Value
	retryWrites bool

	body []byte // the encoded batch, for its first request (optional)

	send   []int  // indices in orig to send next
	gone   []bool // orig[i] is resolved: stored, or reported
	stored []bool // the last read back found orig[i] stored
	verify bool   // read back before sending again
	maybe  bool   // some request may have stored values not yet accounted for
	tries  int    // requests sent
	broken error  // the batch could not be read from the spool
	found  int    // dated values the last read back found stored
}

// stepResult is what one step of a delivery did.
type stepResult struct {
	done                   bool          // every value is resolved
	answered               bool          // the platform answered (2xx or a refusal)
	err                    error         // the failure of this step, if any
	retryAfter             time.Duration // the platform's Retry-After, if any
	transient              bool          // err may pass: try again after a wait
	failed                 []*WriteError // values refused for good, or of unknown fate
	sent, verified, resent int
}

func (d *delivery) start(verify bool) {
	d.gone = make([]bool, len(d.orig))
	d.stored = make([]bool, len(d.orig))
	d.send = make([]int, len(d.orig))
	for i := range d.send {
		d.send[i] = i
	}
	if verify {
		d.verify, d.maybe = true, true
		d.send = nil
	}
}

// unresolved returns the values not yet known stored or reported.
func (d *delivery) unresolved() []Value {
	var out []Value
	for i, g := range d.gone {
		if !g && !d.stored[i] {
			out = append(out, d.orig[i])
		}
	}
	return out
}

// giveUp ends a delivery that ran out of attempts: the values refused for
// good (failed), and the unresolved ones, whose fate is unknown while a
// read back is due.
func (d *delivery) giveUp(failed []error, cause error) error {
	if vals := d.unresolved(); len(vals) > 0 {
		failed = append(failed, &WriteError{Values: vals, Unknown: d.verify, Err: cause})
	}
	return joinErrors(failed)
}

// pick returns the values of orig at idx.
func (d *delivery) pick(idx []int) []Value {
	out := make([]Value, len(idx))
	for j, i := range idx {
		out[j] = d.orig[i]
	}
	return out
}

// step does one request, or the reads of one verification, and says what
// came of it.
func (d *delivery) step(ctx context.Context) (r stepResult) {
	if d.verify {
		missing, err := d.c.missing(ctx, d.orig, d.gone)
		if err != nil {
			status, _ := answerOf(err)
			if errors.Is(err, ErrPaginationStalled) || transport.Classify(transport.Idempotent, status, false, err) == transport.Permanent && !errors.Is(err, ErrResourceNotFound) {
				// The thing is gone or the token refused: nothing can be
				// stored any more.
				r.done, r.answered, r.err = true, true, err
				r.failed = append(r.failed, &WriteError{Values: d.unresolved(), Unknown: true, Err: err})
				return r
			}
			r.err, r.transient = err, true
			r.answered = status != 0
			return r
		}
		r.answered = true
		found := 0
		for i, g := range d.gone {
			if !g && !d.orig[i].Datetime.IsZero() {
				d.stored[i] = !slices.Contains(missing, i)
				if d.stored[i] {
					found++
				}
			}
		}
		r.verified = max(found-d.found, 0)
		d.found = found
		d.verify = false
		// Values without a Datetime still waiting are blind re-sends.
		for _, i := range d.send {
			if d.orig[i].Datetime.IsZero() {
				missing = append(missing, i)
			}
		}
		slices.Sort(missing)
		d.send = missing
		if len(d.send) == 0 {
			d.maybe = false
			d.resolveAll()
			r.done = true
			return r
		}
	}
	vals := d.pick(d.send)
	body, bad := d.body, (*badValues)(nil)
	if body == nil || len(vals) != len(d.orig) {
		body, bad = encodeBatch(vals)
	}
	d.body = nil
	if bad != nil {
		// Changed after Add: they no longer encode.
		var keep []int
		for j, i := range d.send {
			if slices.Contains(bad.idx, j) {
				d.gone[i] = true
			} else {
				keep = append(keep, i)
			}
		}
		r.failed = append(r.failed, bad.report(vals))
		d.send = keep
		if body == nil {
			d.resolveAll()
			r.done = true
			return r
		}
	}
	kind := transport.Write
	for _, i := range d.send {
		if !d.orig[i].Datetime.IsZero() {
			kind = transport.Verified
			break
		}
	}
	resend := d.tries > 0
	d.tries++
	err := d.c.postValues(ctx, kind, d.c.writeRoute(d.wc), body)
	status, retryAfter := answerOf(err)
	oc := transport.Classify(kind, status, retryAfter > 0, err)
	r.err = err
	r.retryAfter = retryAfter
	r.answered = status != 0
	n := len(d.send)
	switch oc {
	case transport.Stored:
		if resend {
			r.resent = n
		} else {
			r.sent = n
		}
		// Whatever an earlier read back found is stored too.
		d.resolveAll()
		r.done = true
	case transport.NotStored:
		r.transient = true
	case transport.Ambiguous:
		r.transient = true
		d.maybe = true
		var dated, blind, unknown []int
		for _, i := range d.send {
			switch {
			case !d.orig[i].Datetime.IsZero():
				dated = append(dated, i)
			case d.retryWrites:
				blind = append(blind, i)
			default:
				unknown = append(unknown, i)
				d.gone[i] = true
			}
		}
		if len(unknown) > 0 {
			r.failed = append(r.failed, &WriteError{Values: d.pick(unknown), Unknown: true, Err: err})
		}
		d.send = blind
		d.verify = len(dated) > 0
		if !d.verify && len(blind) == 0 {
			d.resolveAll()
			r.done = true
		}
	case transport.Permanent:
		r.failed = append(r.failed, &WriteError{Values: d.pick(d.send), Err: err})
		d.send = nil
		d.resolveAll()
		r.done = true
	}
	return r
}

func (d *delivery) resolveAll() {
	for i := range d.gone {
		d.gone[i] = true
	}
}

// answerOf is the HTTP status and Retry-After of an *APIError in err, else
// zeros.
func answerOf(err error) (status int, retryAfter time.Duration) {
	if err == nil {
		return 0, 0 // before ae, which escapes: no allocation per success
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode, ae.RetryAfter
	}
	return 0, 0
}

// ident identifies a value with a Datetime on the platform.
type ident struct {
	key   string
	ms    int64
	value string // canonical JSON
}

// missing reads back the keys of the dated values of batch not marked gone,
// over the batch's time span, and returns the indices of those the platform
// does not hold, counting values as a multiset: of N identical values
// (same key, millisecond and value) of which M are found, N-M are missing.
// One read per key, plus one per further page of a key with more than 999
// values in the span.
func (c *Client) missing(ctx context.Context, batch []Value, gone []bool) ([]int, error) {
	type span struct{ lo, hi int64 }
	spans := map[string]*span{}
	var keys []string
	need := map[ident]int{}
	ids := make([]ident, len(batch))
	for i := range batch {
		v := &batch[i]
		if gone[i] || v.Datetime.IsZero() {
			continue
		}
		id, err := identOf(v.Key, v.Datetime, v.Value)
		if err != nil {
			return nil, err
		}
		ids[i] = id
		need[id]++
		s := spans[v.Key]
		if s == nil {
			s = &span{lo: id.ms, hi: id.ms}
			spans[v.Key] = s
			keys = append(keys, v.Key)
		}
		s.lo, s.hi = min(s.lo, id.ms), max(s.hi, id.ms)
	}
	missing := 0
	for _, n := range need {
		missing += n
	}
	for _, key := range keys {
		if missing == 0 {
			break // all found: no need to read on to the end of the window
		}
		s := spans[key]
		opts := &ReadOptions{Start: time.UnixMilli(s.lo), End: time.UnixMilli(s.hi + 1)}
		for v, err := range c.Values(ctx, key, opts) {
			if errors.Is(err, ErrResourceNotFound) && !errors.Is(err, ErrThingNotFound) {
				break // never written: nothing of it is stored
			}
			if err != nil {
				return nil, errorf("thethings: verify the values of key %q: %w", key, err)
			}
			id, err := identOf(key, v.Datetime, v.Value)
			if err != nil {
				continue // not one of ours
			}
			if need[id] > 0 {
				need[id]--
				if missing--; missing == 0 {
					break
				}
			}
		}
	}
	var out []int
	for i := len(batch) - 1; i >= 0; i-- {
		if gone[i] || batch[i].Datetime.IsZero() {
			continue
		}
		if need[ids[i]] > 0 {
			need[ids[i]]--
			out = append(out, i)
		}
	}
	slices.Reverse(out)
	return out, nil
}

// encodeBatch encodes batch. Values that no longer encode are left out and
// returned; body is nil when none is left.
func encodeBatch(batch []Value) ([]byte, *badValues) {
	body, err := appendBatch(nil, batch, 0, true)
	if err == nil {
		return body, nil
	}
	body = append(body[:0], `{"values":[`...)
	bad := &badValues{}
	n := 0
	for i := range batch {
		mark := len(body)
		if n > 0 {
			body = append(body, ',')
		}
		var ierr error
		v := &batch[i]
		if body, ierr = wire.AppendCheckedItem(body, v.Key, v.Value, (*wire.Geo)(v.Geo), v.Datetime); ierr != nil {
			body = body[:mark]
			if bad.err == nil {
				bad.err = &wire.ItemError{Index: i, Key: batch[i].Key, Err: ierr}
			}
			bad.idx = append(bad.idx, i)
			continue
		}
		n++
	}
	if n == 0 {
		return nil, bad
	}
	return append(body, "]}"...), bad
}

// badValues are values of a batch that no longer encode: they were changed
// after Add. Their error's index counts from the start of the batch.
type badValues struct {
	idx []int
	err error // the first one's
}

func (b *badValues) report(batch []Value) *WriteError {
	we := &WriteError{Err: b.err}
	for _, i := range b.idx {
		we.Values = append(we.Values, batch[i])
	}
	return we
}

// identOf is the identity of a value with a Datetime: its key, its
// millisecond and its value as canonical JSON (numbers as the float64 they
// denote, -0 as 0, object members sorted), so that what was sent and what the
// platform answers compare equal however either spells them.
func identOf(key string, t time.Time, v any) (ident, error) {
	raw, err := wire.AppendValue(nil, v)
	if err != nil {
		return ident{}, err
	}
	id := ident{key: key, ms: t.UnixMilli()}
	if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
		id.value = string(appendFloat(nil, f))
		return id, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return ident{}, err
	}
	id.value = string(appendCanonical(nil, x))
	return id, nil
}

// appendCanonical appends x, as decoded with UseNumber, in canonical JSON.
func appendCanonical(b []byte, x any) []byte {
	switch x := x.(type) {
	case json.Number:
		if f, err := strconv.ParseFloat(string(x), 64); err == nil {
			return appendFloat(b, f)
		}
		return append(b, x...)
	case string:
		return strconv.AppendQuote(b, x)
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendCanonical(b, e)
		}
		return append(b, ']')
	case map[string]any:
		keys := slices.Sorted(maps.Keys(x))
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, k)
			b = append(b, ':')
			b = appendCanonical(b, x[k])
		}
		return append(b, '}')
	case bool:
		return strconv.AppendBool(b, x)
	default:
		return append(b, "null"...)
	}
}

// appendFloat appends f in canonical form: -0 as 0, as the platform
// (JavaScript) answers it.
func appendFloat(b []byte, f float64) []byte {
	if f == 0 {
		f = 0 // -0 too
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
