package thethings

import (
	"bytes"
	"context"
	"errors"
	"io"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/thethings-go/thethings/internal/stream"
	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

const (
	defaultKeepAlive = 60 * time.Second
	minKeepAlive     = time.Second
	maxKeepAlive     = time.Hour
	// idleGrace is added to the keep-alive interval before a silent stream
	// counts as dead.
	idleGrace = 2 * time.Second
	// backfillSkew widens the backfill window below the last frame
	// received, for the difference between this machine's clock and the
	// platform's and for the time a frame takes to arrive.
	backfillSkew = 2 * time.Second
	// Bounds of WithMaxFrameSize.
	minFrameLimit = 1 << 10
	maxFrameLimit = 1 << 30
	// seenMax and seenHorizon bound the backfill bookkeeping: at most
	// seenMax delivered values are remembered, none longer than
	// seenHorizon after it was received, whatever its datetime.
	seenMax     = 4096
	seenHorizon = 10 * time.Minute
)

// Message is what one write on the platform delivers to a subscription:
// the values of that write, in the order they were written.
type Message struct {
	Values []Value
	// Backfill is true when the values were read from history after a
	// reconnect (see WithBackfill) rather than pushed live.
	Backfill bool
}

// State is the state of a subscription's connection, reported to the
// function given to WithStateHandler.
type State int

// States of a subscription.
const (
	// StateConnected: the platform accepted the subscription and frames
	// flow. A report with a non-nil cause means the connection is up but
	// the backfill after it failed (see WithBackfill).
	StateConnected State = iota + 1
	// StateDisconnected: a connection ended or a connection attempt failed;
	// the cause says why (ErrIdleTimeout for a silent stream).
	StateDisconnected
	// StateReconnecting: a new connection attempt starts now, after the
	// backoff wait; the cause is the failure that made it necessary.
	StateReconnecting
)

// String returns "connected", "disconnected" or "reconnecting".
func (s State) String() string {
	switch s {
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateReconnecting:
		return "reconnecting"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// SubscribeOption configures a subscription. An invalid option makes the
// sequence yield one error matching ErrInvalidOption, before any I/O.
type SubscribeOption func(*subscribeConfig) error

type subscribeConfig struct {
	keepAlive   time.Duration
	maxAttempts int // -1: forever
	backfill    []string
	onState     func(State, error)
	maxFrame    int
}

// WithKeepAlive sets the interval of the platform's keep-alive frames, sent
// as ?keepAlive= in milliseconds: 60s by default, at least 1s and at most
// 1h, whole milliseconds. A stream silent for the interval plus 2s is
// considered dead (ErrIdleTimeout) and replaced.
func WithKeepAlive(d time.Duration) SubscribeOption {
	return func(c *subscribeConfig) error {
		if d < minKeepAlive || d > maxKeepAlive || d%time.Millisecond != 0 {
			return optionError("keep-alive %s outside 1s..1h or not whole milliseconds", d)
		}
		c.keepAlive = d
		return nil
	}
}

// WithReconnect bounds the reconnection attempts made in a row: after
// maxAttempts failed attempts the sequence ends with the last error. The
// count starts again once a connection is established. By default a
// subscription reconnects forever; 0 never reconnects. Waits between
// attempts grow exponentially with jitter from the client's
// RetryPolicy.MinWait up to RetryPolicy.MaxWait, and start over only after
// a connection lived (it delivered a message, or stayed up past MaxWait):
// a platform that accepts and drops at once meets ever longer waits. A
// Retry-After of a 429 or 503 answer is honoured, clamped to MaxWait.
func WithReconnect(maxAttempts int) SubscribeOption {
	return func(c *subscribeConfig) error {
		if maxAttempts < 0 {
			return optionError("reconnect attempts %d below 0", maxAttempts)
		}
		c.maxAttempts = maxAttempts
		return nil
	}
}

// WithBackfill makes a subscription recover the values of keys written
// while it was disconnected. After each reconnect it reads the keys'
// history from shortly (2s) before the last frame received on the lost
// connection, and delivers the values not delivered before, oldest first,
// as Messages with Backfill set, before any live value of the new
// connection. Values with the same datetime form one Message (the values of
// one write share the platform's datetime unless they carried their own).
//
// A value counts as delivered when a value with the same key, datetime (to
// the millisecond) and JSON value was delivered; live values that repeat a
// backfilled one are dropped too. So two writes of the same value with the
// same explicit datetime arrive once. The window is in time, so a value
// written during the gap with an explicit datetime older than the window is
// not recovered (a Writer's values are stamped at Add: those it delivers
// late, after an outage, are such values; give it WithServerTimestamps when
// a subscriber's backfill must see them), and this machine's clock is assumed to be within about 2s
// of the platform's. The values of the gap are held in memory until they
// are delivered. Delivered values are remembered as 64-bit fingerprints,
// at most 4096 of them and none for longer than ten minutes, whatever
// their datetimes: a value forgotten so may be delivered again by a later
// backfill.
//
// A failed history read does not end the subscription: it is reported to
// the state handler as StateConnected with the error as cause, the values
// of the gap that could be read are delivered, and live delivery goes on.
// Keys follow the key rules; magic keys ($geo, $settings) hold no history
// and are refused.
func WithBackfill(keys ...string) SubscribeOption {
	return func(c *subscribeConfig) error {
		if len(keys) == 0 {
			return optionError("backfill without keys")
		}
		for _, k := range keys {
			if err := wire.ValidateKey(k, false); err != nil {
				return errorf("thethings: backfill key: %w: %w", err, ErrInvalidOption)
			}
			if !slices.Contains(c.backfill, k) {
				c.backfill = append(c.backfill, k)
			}
		}
		return nil
	}
}

// WithStateHandler reports the subscription's connection states and the
// errors met while reconnecting. f is called synchronously from the
// goroutine ranging over the subscription, so it delays the subscription
// while it runs (the idle watchdog does not count that time); it must not
// range over the subscription itself.
func WithStateHandler(f func(s State, cause error)) SubscribeOption {
	return func(c *subscribeConfig) error {
		if f == nil {
			return optionError("nil state handler")
		}
		c.onState = f
		return nil
	}
}

// WithMaxFrameSize bounds one frame of the stream, 16 MiB by default,
// 1 KiB at least and 1 GiB at most. A larger frame is skipped as it
// arrives, without holding more than n bytes of it, and yielded as an error
// matching ErrFrameTooLarge; the subscription goes on.
func WithMaxFrameSize(n int) SubscribeOption {
	return func(c *subscribeConfig) error {
		if n < minFrameLimit || n > maxFrameLimit {
			return optionError("max frame size %d outside 1 KiB..1 GiB", n)
		}
		c.maxFrame = n
		return nil
	}
}

func newSubscribeConfig(opts []SubscribeOption) (*subscribeConfig, error) {
	cfg := &subscribeConfig{keepAlive: defaultKeepAlive, maxAttempts: -1, maxFrame: stream.DefaultMaxFrame}
	for _, o := range opts {
		if o == nil {
			return nil, optionError("nil subscribe option")
		}
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// Subscribe opens the thing's realtime channel and yields one Message per
// write of the thing (and, with WithBackfill, the values missed while
// disconnected). The sequence is single-use: ranging over it a second time
// yields one error and nothing else.
//
// The subscription uses the client's stream HTTP client (no whole-request
// timeout). A stream that delivers nothing, not even a keep-alive, for the
// keep-alive interval plus 2s is dead: its connection is closed and the
// cause reported as ErrIdleTimeout. The watchdog does not count the time
// the loop body takes: a slow consumer leaves frames waiting in the
// connection, it does not make the stream look dead. Lost connections, and
// a first connection that fails, are retried with jittered, capped backoff
// (see WithReconnect); a frame cut by a lost connection is never delivered
// in part. Errors met meanwhile go to the WithStateHandler function, not to
// the loop.
//
// The loop receives an error as the last element of the sequence when the
// reconnect budget is spent (the last failure is wrapped), the platform
// refused the subscription for good (401/403: ErrUnauthorized; an unknown
// token: ErrThingNotFound; other 4xx but 408 and 429; 501; a redirect), or
// an option or a nil ctx was invalid (ErrInvalidOption). When ctx ends, the sequence ends
// with no error: the caller asked for it. Two errors do not end the
// sequence: a frame over the size limit (see WithMaxFrameSize) is skipped
// and yielded as an error matching ErrFrameTooLarge, and items of a data
// frame that cannot be decoded are yielded as an error matching
// ErrInvalidValue, after the frame's other items. The watchdog also bounds
// the connection attempt (a server that accepts and sends nothing), and
// never counts time spent in the loop body or the state handler. Breaking
// out of the loop, or ctx ending, closes the connection at once and leaves
// no goroutine or timer behind.
//
// Values of live messages carry what the platform sent, decoded like read
// values: numbers as json.Number (exact), strings, bools, nil, and
// map[string]any or []any for objects and arrays; Datetime and Geo when
// the platform includes them (Datetime is zero otherwise).
func (c *Client) Subscribe(ctx context.Context, opts ...SubscribeOption) iter.Seq2[Message, error] {
	cfg, cfgErr := newSubscribeConfig(opts)
	var used atomic.Bool
	return func(yield func(Message, error) bool) {
		if used.Swap(true) {
			yield(Message{}, errors.New("thethings: a subscription can be ranged over only once; call Subscribe again"))
			return
		}
		if cfgErr != nil {
			yield(Message{}, cfgErr)
			return
		}
		if err := checkContext(ctx); err != nil {
			yield(Message{}, err)
			return
		}
		s := newSubscriber(c, cfg, yield)
		s.run(ctx)
	}
}

// subscriber is the state of one subscription, owned by the goroutine that
// ranges over it.
type subscriber struct {
	c     *Client
	cfg   *subscribeConfig
	yield func(Message, error) bool
	url   string
	path  string // redacted
	idle  time.Duration

	stopped   bool      // yield returned false
	upAt      time.Time // when the current connection was established
	delivered bool      // the current connection delivered a message

	// backfill state
	keys      map[string]bool
	lastFrame time.Time // local time of the last frame of an established stream
	gapFrom   time.Time // start of the history window to backfill; zero: none
	seen      seenSet
}

func newSubscriber(c *Client, cfg *subscribeConfig, yield func(Message, error) bool) *subscriber {
	rt := c.thingRoute()
	s := &subscriber{
		c:     c,
		cfg:   cfg,
		yield: yield,
		url:   c.base.String() + rt.path + "?keepAlive=" + strconv.FormatInt(cfg.keepAlive.Milliseconds(), 10),
		path:  c.displayPath(rt),
		idle:  cfg.keepAlive + idleGrace,
	}
	if len(cfg.backfill) > 0 {
		s.keys = make(map[string]bool, len(cfg.backfill))
		for _, k := range cfg.backfill {
			s.keys[k] = true
		}
	}
	return s
}

func (s *subscriber) state(st State, cause error) {
	if s.c.logger != nil {
		if cause != nil {
			s.c.logger.Info("thethings: subscription "+st.String(), "cause", cause.Error())
		} else {
			s.c.logger.Info("thethings: subscription " + st.String())
		}
	}
	if s.cfg.onState != nil {
		s.cfg.onState(st, cause)
	}
}

// run connects and reconnects until the sequence ends, through the
// transport's retry loop: the budget (WithReconnect) starts over when a
// connection is established, the backoff only when one lived (see
// connect): a platform that accepts and drops at once meets ever longer
// waits.
func (s *subscriber) run(ctx context.Context) {
	loop := transport.Loop{Policy: s.c.tr.Policy, Max: s.cfg.maxAttempts}
	var prev error // the failure that made the next attempt necessary
	last, end := loop.Run(ctx, func(ctx context.Context) transport.Step {
		if prev != nil {
			s.state(StateReconnecting, prev)
		}
		established, err := s.connect(ctx)
		if s.stopped || ctx.Err() != nil {
			return transport.Step{} // the caller ended it: no error
		}
		if established && s.keys != nil && s.gapFrom.IsZero() {
			s.gapFrom = s.lastFrame.Add(-backfillSkew)
		}
		s.state(StateDisconnected, err)
		prev = err
		// A connection lived when it delivered a message or outlasted the
		// longest wait: then the backoff starts over.
		lived := s.delivered || established && time.Since(s.upAt) >= s.c.tr.Policy.MaxWait
		st := transport.Step{Err: err, Retry: !permanentSubscribeError(err), Reset: established, Lived: lived}
		var ae *APIError
		if errors.As(err, &ae) {
			st.RetryAfter = ae.RetryAfter
		}
		return st
	})
	switch {
	case last.Err == nil || end == transport.Cut || s.stopped || ctx.Err() != nil:
	case end == transport.Spent:
		s.yield(Message{}, errorf("thethings: subscription gave up after %d reconnect attempts: %w", s.cfg.maxAttempts, last.Err))
	default:
		s.yield(Message{}, last.Err)
	}
}

// permanentSubscribeError reports answers that a reconnect cannot fix, by
// the transport's rule for streams. A 403 that asks to slow down counts as
// the 429 it means.
func permanentSubscribeError(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) {
		return false
	}
	status := ae.StatusCode
	if errors.Is(ae, ErrRateLimited) {
		status = http.StatusTooManyRequests
	}
	retry, _ := transport.DecideAnswer(transport.Stream, false, status, ae.RetryAfter > 0)
	return !retry
}

// connError is a failure of the subscription's connection whose message
// was redacted; the cause stays reachable for errors.Is and errors.As.
type connError struct {
	msg string
	err error
}

func (e *connError) Error() string { return e.msg }
func (e *connError) Unwrap() error { return e.err }

func (s *subscriber) connError(what string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &connError{msg: wire.OnePrefix("thethings: GET " + s.path + ": " + what + ": " + s.c.redact(err.Error())), err: err}
}

// connect runs one connection until it ends. established reports whether
// the platform accepted the subscription.
func (s *subscriber) connect(ctx context.Context) (established bool, err error) {
	s.delivered = false
	connCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(connCtx, http.MethodGet, s.url, nil)
	if err != nil {
		return false, s.connError("request", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", s.c.userAgent)
	// The watchdog runs from the start: a server that accepts the
	// connection and sends nothing is as dead as a silent stream.
	idleErr := errorf("%w: nothing received for %s", ErrIdleTimeout, s.idle)
	wd := stream.NewWatchdog(s.idle, cancel, idleErr)
	defer wd.Stop()
	resp, err := s.c.stream.Do(req)
	if err != nil {
		if connCtx.Err() != nil && ctx.Err() == nil {
			return false, context.Cause(connCtx)
		}
		return false, s.connError("connect", err)
	}
	// Close the body as soon as the connection is cancelled (watchdog,
	// ctx, return), whatever the transport does with the context.
	closed := make(chan struct{})
	stopClose := context.AfterFunc(connCtx, func() {
		_ = resp.Body.Close()
		close(closed)
	})
	defer func() {
		if stopClose() {
			_ = resp.Body.Close()
		} else {
			<-closed // leave no goroutine behind
		}
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return false, s.c.apiError(resp, http.MethodGet, s.path)
	}

	// Every byte received feeds the watchdog, so a long frame coming
	// slowly is not taken for silence.
	dec := stream.NewDecoder(&feeder{r: resp.Body, wd: wd}, s.cfg.maxFrame)
	for {
		frame, err := dec.Next()
		if errors.Is(err, stream.ErrFrameTooLarge) {
			if !s.deliver(wd, Message{}, errorf("thethings: GET %s: frame of more than %d bytes skipped: %w", s.path, s.cfg.maxFrame, ErrFrameTooLarge)) {
				return established, nil
			}
			continue
		}
		if err != nil {
			return established, s.readError(connCtx, err)
		}
		wd.Feed()
		now := time.Now()
		if !established {
			if err := s.firstFrame(frame, resp.StatusCode); err != nil {
				return false, err
			}
			established = true
			s.upAt = now
			s.lastFrame = now
			wd.Pause() // the handler's time is not the stream's silence
			s.state(StateConnected, nil)
			if !s.gapFrom.IsZero() {
				s.backfill(connCtx)
				if s.stopped {
					return true, nil
				}
			}
			wd.Feed()
			if frame[0] != '[' {
				continue
			}
		}
		s.lastFrame = now
		if stream.IsKeepAlive(frame) {
			continue
		}
		if frame[0] == '{' {
			if err := s.statusFrame(frame, resp.StatusCode); err != nil {
				return true, err
			}
			continue // other objects carry nothing for us
		}
		items, derr := wire.DecodeFrameEach(frame)
		if msg := s.live(items, now); len(msg.Values) > 0 {
			s.delivered = true
			if !s.deliver(wd, msg, nil) {
				return true, nil
			}
		}
		if derr != nil {
			err := &causeError{msg: wire.OnePrefix("thethings: GET " + s.path + ": " + shorten(s.c.redact(derr.Error()))), errs: []error{derr, ErrInvalidValue}}
			if !s.deliver(wd, Message{}, err) {
				return true, nil
			}
		}
	}
}

// deliver yields to the loop with the watchdog paused (the consumer's time
// is not the stream's silence). It reports false when the loop stopped.
func (s *subscriber) deliver(wd *stream.Watchdog, msg Message, err error) bool {
	wd.Pause()
	if !s.yield(msg, err) {
		s.stopped = true
		return false
	}
	wd.Feed()
	return true
}

// feeder feeds the watchdog on every read that brings bytes.
type feeder struct {
	r  io.Reader
	wd *stream.Watchdog
}

func (f *feeder) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.wd.Feed()
	}
	return n, err
}

// readError names why reading the stream failed: the watchdog's or ctx's
// cause when the connection was cancelled, else the read error.
func (s *subscriber) readError(connCtx context.Context, err error) error {
	if connCtx.Err() != nil {
		return context.Cause(connCtx)
	}
	switch {
	case err == io.EOF:
		return s.connError("stream", errors.New("closed by the platform"))
	case errors.Is(err, stream.ErrPartialFrame):
		return s.connError("stream cut inside a frame", err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return s.connError("stream", errors.New("connection closed without the end of the response"))
	}
	return s.connError("stream", err)
}

// firstFrame checks the platform's answer to the subscription: any
// {"status":"success",...} is accepted, whatever its message; so is a
// first frame without status (a keep-alive or data).
func (s *subscriber) firstFrame(frame []byte, httpStatus int) error {
	if frame[0] != '{' {
		return nil
	}
	return s.statusFrame(frame, httpStatus)
}

// statusFrame turns a {"status":"error",...} frame into an *APIError.
// Objects with status "success" or no status are no error.
func (s *subscriber) statusFrame(frame []byte, httpStatus int) error {
	if !bytes.Contains(frame, []byte(`"status"`)) {
		return nil
	}
	env, ok := wire.ParseEnvelope(frame)
	if !ok || env.Status == "" || strings.EqualFold(env.Status, "success") {
		return nil
	}
	e := &APIError{StatusCode: httpStatus, Method: http.MethodGet, Path: s.path}
	s.c.fromEnvelope(e, env)
	if e.Code >= 400 && e.Code <= 599 {
		// The platform's code says what kind of refusal this is; let
		// errors.Is see it as it would an HTTP status.
		e.StatusCode = e.Code
	} else if lower := strings.ToLower(env.Message); strings.Contains(lower, "not found") || isThingMessage(lower) {
		e.StatusCode = http.StatusNotFound
	}
	return e
}

func itemValue(it *wire.Item) Value {
	v := Value{Key: it.Key, Value: it.Value, Datetime: it.Time}
	if v.Datetime.IsZero() && it.RawTime != "" {
		if t, err := ParseTime(it.RawTime); err == nil {
			v.Datetime = t
		}
	}
	if it.Geo != nil {
		v.Geo = &Geo{Lat: it.Geo.Lat, Long: it.Geo.Long}
	}
	return v
}
