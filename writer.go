package thethings

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

// Writer defaults.
const (
	defaultFlushInterval = time.Second
	defaultMaxBuffered   = 10000
)

// WriterOption configures a [Writer].
type WriterOption func(*writerConfig)

type writerConfig struct {
	batchSize   int
	interval    time.Duration
	maxBuffered int
	writeOpts   []WriteOption
	onError     func(*WriteError)
	err         error
}

// WithBatchSize sets how many values go in one request: 1..1000, default 100.
// A full batch is sent at once.
func WithBatchSize(n int) WriterOption {
	return func(c *writerConfig) {
		if n < 1 || n > maxBatchSize {
			c.setErr(optionError("batch size %d out of range 1..%d", n, maxBatchSize))
			return
		}
		c.batchSize = n
	}
}

// WithFlushInterval sets how long a value may wait in the buffer for its
// batch to fill: default 1s. Zero disables timed flushes (values then go
// out when a batch is full, on Flush and on Close). Negative is invalid.
func WithFlushInterval(d time.Duration) WriterOption {
	return func(c *writerConfig) {
		if d < 0 {
			c.setErr(optionError("negative flush interval %s", d))
			return
		}
		c.interval = d
	}
}

// WithMaxBuffered bounds the values held by the writer, including those
// being sent: default 10,000, at least the batch size. When the buffer is
// full, Add waits for room (or for its context to end).
func WithMaxBuffered(n int) WriterOption {
	return func(c *writerConfig) {
		if n < 1 {
			c.setErr(optionError("max buffered %d must be positive", n))
			return
		}
		c.maxBuffered = n
	}
}

// WithWriteOptions applies write options (WithStore, WithBroadcast) to every
// request of the writer.
func WithWriteOptions(opts ...WriteOption) WriterOption {
	return func(c *writerConfig) { c.writeOpts = append(c.writeOpts, opts...) }
}

// WithErrorHandler sets a function called with every [*WriteError] of the
// writer: values the platform refused for good, or whose request's outcome is
// unknown. It runs on the writer's goroutine, which waits for it: it must not
// block for long and must not call Flush or Close. The same errors are also
// returned by the next Flush or Close.
func WithErrorHandler(f func(*WriteError)) WriterOption {
	return func(c *writerConfig) { c.onError = f }
}

func (c *writerConfig) setErr(err error) {
	if c.err == nil {
		c.err = err
	}
}

// Writer batches values in the background: it collects values given to Add
// and writes them in requests of the batch size, when a batch is full, when
// the flush interval has passed, on Flush and on Close. It is safe for
// concurrent use. Create it with [Client.NewWriter] and always Close it.
//
// A Writer loses nothing silently. Values whose request the platform refused
// without storing them for a passing reason (429, 503 with Retry-After, a
// failed dial) stay buffered and are sent again, in order, after a capped,
// jittered backoff drawn from the client's [RetryPolicy]. Any other failure
// (a permanent refusal, or an outcome that is unknown because the request may
// have been stored) is a [*WriteError] with the request's values: it goes to
// the error handler, if any, and is returned by the next Flush or Close. Values
// of a request whose outcome is unknown are not sent again, so nothing is
// stored twice.
//
// Invalid options (a batch size outside 1..1000, a negative interval, a
// buffer smaller than the batch size) do not panic: the writer then takes no
// values, and every Add, Flush and Close returns an error matching
// [ErrInvalidOption].
type Writer struct {
	c     *Client
	cfg   writerConfig
	err   error // invalid configuration
	rt    route
	ctx   context.Context // the requests' context, cancelled to abort
	abort context.CancelFunc
	kick  chan struct{} // wakes the sender
	done  chan struct{} // closed when the sender has returned

	mu       sync.Mutex
	buf      ring          // unresolved values, oldest first; the first batch may be in flight
	taken    int64         // values ever accepted
	resolved int64         // values written or reported
	flushTo  int64         // send partial batches until resolved reaches this
	errs     []error       // *WriteErrors not yet returned by Flush or Close
	changed  chan struct{} // closed and replaced whenever the state above changes
	closing  bool
	closeErr error
	closed   bool // closeErr is set
	retryAt  time.Time
	attempt  int
}

// NewWriter returns a batching writer for this client's thing. It starts
// one goroutine, which Close ends. See [Writer] for the defaults.
func (c *Client) NewWriter(opts ...WriterOption) *Writer {
	cfg := writerConfig{batchSize: defaultBatchSize, interval: defaultFlushInterval, maxBuffered: defaultMaxBuffered}
	for _, o := range opts {
		if o == nil {
			cfg.setErr(optionError("nil writer option"))
			continue
		}
		o(&cfg)
	}
	if cfg.err == nil && cfg.maxBuffered < cfg.batchSize {
		cfg.setErr(optionError("max buffered %d below batch size %d", cfg.maxBuffered, cfg.batchSize))
	}
	w := &Writer{c: c, cfg: cfg, err: cfg.err, changed: make(chan struct{}), done: make(chan struct{})}
	if w.err == nil {
		wc, err := newWriteConfig(cfg.writeOpts)
		w.err = err
		w.rt = c.writeRoute(wc)
	}
	if w.err != nil {
		close(w.done)
		return w
	}
	w.ctx, w.abort = context.WithCancel(context.Background())
	w.kick = make(chan struct{}, 1)
	go w.run()
	return w
}

// Add hands values to the writer. They are validated first, like [Client.Write]
// does: a bad value is a [*WriteError] naming it, and nothing is taken. When
// the buffer has no room for all of them, Add waits until it has, or until ctx
// ends: then it returns an error wrapping ctx's error and takes nothing. Add
// after Close returns [ErrWriterClosed]. On success all the values are taken:
// their fate is reported by the writer. Values (and what they point to, but
// Geo, which is copied) must not be modified after Add.
func (w *Writer) Add(ctx context.Context, values ...Value) error {
	if w.err != nil {
		return w.err
	}
	if len(values) == 0 {
		if w.isClosing() {
			return ErrWriterClosed
		}
		return nil
	}
	if len(values) > w.cfg.maxBuffered {
		return &WriteError{Values: slices.Clone(values), Err: errorf("thethings: %d values cannot fit in a writer buffer of %d: %w", len(values), w.cfg.maxBuffered, ErrInvalidValue)}
	}
	geos, err := validateValues(values)
	if err != nil {
		return &WriteError{Values: slices.Clone(values), Err: err}
	}
	for {
		w.mu.Lock()
		if w.closing {
			w.mu.Unlock()
			return ErrWriterClosed
		}
		if w.buf.n+len(values) <= w.cfg.maxBuffered {
			w.buf.push(values, geos)
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
// non-nil Geo, in order).
func (r *ring) push(values []Value, geos []Geo) {
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
	if w.err != nil {
		return w.err
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
// nothing is lost silently. Close is idempotent and safe to call from many
// goroutines: every call waits for the same end and returns the same result.
func (w *Writer) Close(ctx context.Context) error {
	if w.err != nil {
		return w.err
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
		<-w.done
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		errs := w.errs
		w.errs = nil
		if w.buf.n > 0 {
			cause := ctx.Err()
			if cause == nil {
				cause = context.Canceled
			}
			errs = append(errs, &WriteError{
				Values: w.buf.first(w.buf.n),
				Err:    errorf("thethings: writer closed before sending: %w", cause),
			})
			w.buf = ring{}
		}
		w.closeErr = errors.Join(errs...)
		w.closed = true
		w.broadcastLocked()
	}
	return w.closeErr
}

func (w *Writer) wake() {
	if w.kick == nil {
		return
	}
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

// run is the writer's goroutine: it sends batches until closed and drained,
// or aborted.
func (w *Writer) run() {
	defer close(w.done)
	var tick <-chan time.Time
	if w.cfg.interval > 0 {
		t := time.NewTicker(w.cfg.interval)
		defer t.Stop()
		tick = t.C
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		w.mu.Lock()
		if w.ctx.Err() != nil || (w.closing && w.buf.n == 0) {
			w.mu.Unlock()
			return
		}
		var batch []Value
		waiting := false
		if w.buf.n > 0 && (w.buf.n >= w.cfg.batchSize || w.resolved < w.flushTo || w.closing) {
			if d := time.Until(w.retryAt); d > 0 {
				retry.Reset(d)
				waiting = true
			} else {
				batch = w.buf.first(min(w.cfg.batchSize, w.buf.n))
			}
		}
		w.mu.Unlock()
		if batch != nil {
			w.send(batch)
			continue
		}
		select {
		case <-w.kick:
		case <-tick:
			w.mu.Lock()
			w.flushTo = max(w.flushTo, w.taken)
			w.mu.Unlock()
		case <-retry.C:
		case <-w.ctx.Done():
		}
		if waiting {
			retry.Stop()
		}
	}
}

// send writes one batch, the first values of w.buf, and records the outcome.
func (w *Writer) send(batch []Value) {
	body, bad := w.encode(batch)
	var err error
	maybe := false
	if body != nil {
		maybe, err = w.c.postValues(w.ctx, w.rt, body)
	}
	var reports []*WriteError
	w.mu.Lock()
	switch {
	case err == nil:
		w.attempt = 0
		w.retryAt = time.Time{}
		if bad != nil {
			reports = append(reports, bad.report(batch))
		}
		w.removeLocked(len(batch))
	case !maybe && w.ctx.Err() != nil:
		// Aborted by Close before the request could be stored: the values
		// stay buffered and Close reports them as unsent.
	case !maybe && retryable(err):
		w.attempt++
		w.retryAt = time.Now().Add(w.backoff(err))
	default:
		sent := batch
		if bad != nil {
			reports = append(reports, bad.report(batch))
			sent = bad.others(batch)
		}
		reports = append(reports, &WriteError{Values: sent, Unknown: maybe, Err: err})
		w.removeLocked(len(batch))
	}
	for _, r := range reports {
		w.errs = append(w.errs, r)
	}
	w.broadcastLocked()
	w.mu.Unlock()
	if h := w.cfg.onError; h != nil {
		for _, r := range reports {
			h(r)
		}
	}
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

func (b *badValues) others(batch []Value) []Value {
	out := make([]Value, 0, len(batch)-len(b.idx))
	for i := range batch {
		if !slices.Contains(b.idx, i) {
			out = append(out, batch[i])
		}
	}
	return out
}

// encode encodes batch. Values that no longer encode are left out and
// returned; body is nil when none is left.
func (w *Writer) encode(batch []Value) ([]byte, *badValues) {
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

// removeLocked drops the first n buffered values as resolved.
func (w *Writer) removeLocked(n int) {
	w.buf.drop(n)
	w.resolved += int64(n)
}

// retryable reports a failure that certainly stored nothing and may pass:
// 429, 503, or a request that never left this process for a transient reason.
func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode == http.StatusTooManyRequests || ae.StatusCode == http.StatusServiceUnavailable
	}
	var te *transport.Error
	if errors.As(err, &te) {
		retry, _ := transport.Decide(transport.Write, false, nil, te.Err, false)
		return retry
	}
	return false
}

// backoff is the wait before sending a refused batch again: exponential
// with jitter from the client's policy, at least the platform's Retry-After,
// never more than MaxWait.
func (w *Writer) backoff(err error) time.Duration {
	p := transport.Policy{MinWait: w.c.retry.MinWait, MaxWait: w.c.retry.MaxWait}
	if p.MinWait <= 0 {
		p.MinWait = defaultMinWait
	}
	if p.MaxWait <= 0 {
		p.MaxWait = max(defaultMaxWait, p.MinWait)
	}
	d := transport.Wait(p, min(w.attempt-1, 30), 0)
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		d = max(d, min(ae.RetryAfter, p.MaxWait))
	}
	return d
}
