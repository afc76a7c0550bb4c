// Package transport is the one place that decides, for every request the
// SDK sends over HTTP, whether it may be sent again, whether a failed
// attempt may have been processed by the server (outcome unknown), and how
// long to wait first. Unary calls go through Transport.Do, or DoRead when
// an answer cut mid-way must be asked again; the features that retry on
// their own (the Writer, Subscribe, the MQTT reconnect) ask Decide, Classify
// and Wait.
//
// Three kinds of request exist. Reads are idempotent and are retried on
// network errors, 429 and 5xx but 501. Writes are retried only when the server
// certainly did not store the values: the request never left this process,
// or the server answered 429, or 503 with Retry-After. Activation is never
// repeated once it may have reached the server.
//
// Waits are exponential with jitter. Retry-After is honoured but clamped to
// the policy's MaxWait, and a retry whose wait would outlast the context's
// deadline is not attempted: the caller gets the last answer instead.
//
// The thing token lives in the URL path, so nothing here logs a URL or
// returns an error that carries one: errors carry a redacted path.
package transport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// Kind says how a request may be retried.
type Kind int

const (
	// Idempotent requests (GET) are retried on network errors, 429 and 5xx but 501.
	Idempotent Kind = iota
	// Write requests (POST of values) are retried only when the server
	// certainly did not store them, unless Policy.RetryWrites is set.
	Write
	// Once requests (activation) are retried only when they never left this process.
	Once
	// Verified write requests are like Write, but never re-sent blindly
	// whatever Policy.RetryWrites says, nor after a 503 with Retry-After
	// (a proxy may answer so after the platform stored): their caller
	// verifies an ambiguous outcome by reading back, then re-sends only
	// what is missing.
	Verified
	// Stream requests (a subscription) are like Idempotent, and are also
	// repeated after 408: a long request timed out by the platform or a
	// proxy is opened again.
	Stream
)

// Policy bounds retries. Zero MinWait and MaxWait mean no wait; the caller
// applies its own defaults.
type Policy struct {
	MaxRetries  int
	MinWait     time.Duration
	MaxWait     time.Duration
	RetryWrites bool
}

// Transport sends requests with retries. It is immutable and safe for
// concurrent use; make it with New.
type Transport struct {
	Policy Policy
	logger *slog.Logger
	redact func(string) string
	rc     *retryablehttp.Client
}

// New returns a Transport sending through hc under p. logger (nil: silent)
// gets a Debug line per retry; redact is applied to every error text and
// log line.
func New(hc *http.Client, p Policy, logger *slog.Logger, redact func(string) string) *Transport {
	t := &Transport{Policy: p, logger: logger, redact: redact}
	// One retryablehttp client for every call: the state of a call travels
	// in its request's context. check waits itself, so Backoff is zero.
	t.rc = &retryablehttp.Client{
		HTTPClient: hc,
		RetryMax:   max(p.MaxRetries, 0),
		CheckRetry: func(ctx context.Context, resp *http.Response, err error) (bool, error) {
			return callOf(ctx).check(ctx, resp, err)
		},
		Backoff:      func(time.Duration, time.Duration, int, *http.Response) time.Duration { return 0 },
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
		RequestLogHook: func(_ retryablehttp.Logger, r *http.Request, _ int) {
			c := callOf(r.Context())
			c.gotConn.Store(false)
			c.wrote.Store(false)
		},
	}
	return t
}

// Request is one logical call, possibly sent several times.
type Request struct {
	Kind   Kind
	Method string
	URL    string
	Path   string // redacted path, for errors and logs
	Body   []byte
	Header http.Header
}

// Result describes how a call went.
type Result struct {
	// MaybeProcessed is true when some attempt may have reached the server
	// and been processed without this process seeing a success: a network
	// error after the request was written, or a 5xx answer other than 501 and
	// 503 with Retry-After.
	MaybeProcessed bool
}

// Error is a failure without an HTTP answer: the request could not be sent,
// or the connection failed before a response arrived.
type Error struct {
	Method string
	Path   string // redacted
	Err    error
	// MaybeSent is true when the request may have reached the server.
	MaybeSent bool
	redact    func(string) string
}

// Error reads "thethings: METHOD PATH: cause", redacted.
func (e *Error) Error() string {
	msg := e.Err.Error()
	if e.redact != nil {
		msg = e.redact(msg)
	}
	return fmt.Sprintf("thethings: %s %s: %s", e.Method, e.Path, msg)
}

// Unwrap returns the cause: a context error, a net.Error, ...
func (e *Error) Unwrap() error { return e.Err }

// Do sends r until it succeeds, fails for good, or the policy says stop.
// A non-nil response is returned for every HTTP answer, whatever its status;
// the caller closes its body. Without an answer the error is an *Error.
func (t *Transport) Do(ctx context.Context, r *Request) (*http.Response, Result, error) {
	st := &call{t: t, kind: r.Kind, path: r.Path, method: r.Method}
	ctx = context.WithValue(ctx, callKey{}, st)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn:      func(httptrace.GotConnInfo) { st.gotConn.Store(true) },
		WroteHeaders: func() { st.wrote.Store(true) },
	})
	var body any
	if r.Body != nil {
		body = r.Body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, r.Method, r.URL, body)
	if err != nil {
		return nil, Result{}, &Error{Method: r.Method, Path: r.Path, Err: stripURL(err), redact: t.redact}
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	resp, err := t.rc.Do(req)
	res := Result{MaybeProcessed: st.maybe}
	if err != nil {
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if st.attemptErr != nil && !errors.Is(st.attemptErr, err) && ctx.Err() != nil {
			// Cancelled while waiting to retry: keep what the last attempt met.
			err = fmt.Errorf("%w (after: %w)", ctx.Err(), stripURL(st.attemptErr))
		}
		return nil, res, &Error{Method: r.Method, Path: r.Path, Err: stripURL(err), MaybeSent: st.maybe, redact: t.redact}
	}
	return resp, res, nil
}

// DoRead is Do followed by read, which reads and closes nothing itself: it
// gets every answer Do returns, whatever its status, and DoRead closes its
// body after. A 2xx body whose reading fails on the connection (the answer
// was cut mid-way) is a failed attempt like any other: DoRead decides by
// DecideError whether r may be sent again and, within the policy, waits
// and sends it again; read then starts over on the new answer. Result
// tells whether some attempt may have been processed, a cut answer
// included.
func (t *Transport) DoRead(ctx context.Context, r *Request, read func(*http.Response) error) (Result, error) {
	var maybe bool
	for attempt := 0; ; attempt++ {
		resp, res, err := t.Do(ctx, r)
		res.MaybeProcessed = res.MaybeProcessed || maybe
		if err != nil {
			return res, err
		}
		body := &watched{ReadCloser: resp.Body}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			resp.Body = body
		}
		err = read(resp)
		resp.Body.Close()
		if err == nil || body.err == nil {
			return res, err
		}
		retry, m := DecideError(r.Kind, t.Policy.RetryWrites, body.err, true)
		maybe = maybe || m
		res.MaybeProcessed = res.MaybeProcessed || m
		if ctx.Err() != nil || !retry || attempt >= t.Policy.MaxRetries {
			return res, err
		}
		wait := Wait(t.Policy, attempt, 0)
		if d, ok := ctx.Deadline(); ok && time.Until(d) <= wait {
			return res, err
		}
		if l := t.logger; l != nil {
			l.LogAttrs(ctx, slog.LevelDebug, "thethings: retrying request",
				slog.String("op", r.Method+" "+r.Path), slog.Int("attempt", attempt+1),
				slog.Duration("wait", wait), slog.String("error", t.text(body.err)))
		}
		tm := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			tm.Stop()
			return res, err
		case <-tm.C:
		}
	}
}

// watched is an answer's body that keeps the first error reading it met,
// io.EOF aside.
type watched struct {
	io.ReadCloser
	err error
}

func (w *watched) Read(p []byte) (int, error) {
	n, err := w.ReadCloser.Read(p)
	if err != nil && err != io.EOF && w.err == nil {
		w.err = err
	}
	return n, err
}

// text is err's text without any URL, redacted.
func (t *Transport) text(err error) string {
	msg := stripURL(err).Error()
	if t.redact != nil {
		msg = t.redact(msg)
	}
	return msg
}

// callKey is the context key of a request's *call.
type callKey struct{}

func callOf(ctx context.Context) *call { return ctx.Value(callKey{}).(*call) }

// call is the state of one logical call across its attempts.
type call struct {
	t          *Transport
	kind       Kind
	method     string
	path       string
	attempts   int
	gotConn    atomic.Bool // this attempt got a connection
	wrote      atomic.Bool // this attempt wrote its headers
	maybe      bool        // some attempt may have been processed
	attemptErr error
}

// maybeSent reports whether a failed attempt may have reached the server.
// Only a dial failure, or a connection on which not even the headers were
// written, proves it did not; a RoundTripper that reports no trace events
// (a mock, a custom transport) proves nothing.
func (c *call) maybeSent(err error) bool {
	if err == nil {
		return true
	}
	var op *net.OpError
	var dns *net.DNSError
	if errors.As(err, &op) && op.Op == "dial" || errors.As(err, &dns) {
		return false
	}
	return !(c.gotConn.Load() && !c.wrote.Load())
}

// check decides whether to send the request again and, if so, waits.
func (c *call) check(ctx context.Context, resp *http.Response, err error) (bool, error) {
	c.attempts++
	retry, maybe := Decide(c.kind, c.t.Policy.RetryWrites, resp, err, c.maybeSent(err))
	if maybe {
		c.maybe = true
	}
	if err != nil {
		c.attemptErr = err
	}
	if ctx.Err() != nil || !retry || c.attempts > c.t.Policy.MaxRetries {
		return false, nil
	}
	wait := Wait(c.t.Policy, c.attempts-1, RetryAfterOf(resp, time.Now()))
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= wait {
		// The context would end before the next attempt: return what we have.
		return false, nil
	}
	if l := c.t.logger; l != nil {
		attrs := []slog.Attr{slog.String("op", c.method+" "+c.path), slog.Int("attempt", c.attempts), slog.Duration("wait", wait)}
		if resp != nil {
			attrs = append(attrs, slog.Int("status", resp.StatusCode))
		}
		if err != nil {
			attrs = append(attrs, slog.String("error", c.t.text(err)))
		}
		l.LogAttrs(ctx, slog.LevelDebug, "thethings: retrying request", attrs...)
	}
	if resp != nil {
		// Free the connection while waiting.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
	}
	return true, nil
}

// Decide is the retry rule for one attempt, the one every retrying part of
// the SDK applies: given the request's kind, whether the caller accepts
// duplicate writes, and how the attempt ended (an answer resp, or an error
// err without one), it reports whether the request may be sent again, and
// whether this attempt may have been processed by the server (the outcome
// is unknown). sent tells whether a failed attempt may have reached the
// server: false only when it certainly did not (a failed dial, nothing
// written).
func Decide(kind Kind, retryWrites bool, resp *http.Response, err error, sent bool) (retry, maybeProcessed bool) {
	if err != nil {
		return DecideError(kind, retryWrites, err, sent)
	}
	if resp == nil {
		return false, false
	}
	return DecideAnswer(kind, retryWrites, resp.StatusCode, resp.Header.Get("Retry-After") != "")
}

// DecideAnswer is Decide for an answer already read (an APIError): its
// status code, and whether it carried a Retry-After header.
func DecideAnswer(kind Kind, retryWrites bool, status int, retryAfter bool) (retry, maybeProcessed bool) {
	switch {
	case status == http.StatusTooManyRequests:
		return kind != Once, false
	case status == http.StatusServiceUnavailable && retryAfter && kind != Verified:
		return kind != Once, false
	case status == http.StatusNotImplemented:
		return false, false
	case status == http.StatusRequestTimeout && kind == Stream:
		return true, false
	case status >= 500:
		return repeatable(kind, retryWrites), true
	}
	return false, false
}

// DecideError is Decide for a failure without an answer, such as the Err
// of an *Error, whose MaybeSent is sent.
func DecideError(kind Kind, retryWrites bool, err error, sent bool) (retry, maybeProcessed bool) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false, sent
	}
	if permanent(err) {
		return false, false
	}
	if !sent {
		// Nothing left this process: safe to repeat whatever the kind.
		return true, false
	}
	return repeatable(kind, retryWrites), true
}

// repeatable reports whether a request that may have been processed may be
// sent again: reads always, writes only when the caller accepts duplicates,
// activation never.
func repeatable(kind Kind, retryWrites bool) bool {
	return kind == Idempotent || kind == Stream || kind == Write && retryWrites
}

// Outcome is what the answer to a write says about its values.
type Outcome int

const (
	// Stored: a 2xx answer.
	Stored Outcome = iota
	// NotStored: certainly not stored, for a passing reason (a dial
	// failure or a request that never left this process, 429, 503 with
	// Retry-After): send again after a wait.
	NotStored
	// Ambiguous: the values may have been stored (a connection lost or a
	// timeout after sending, 500, 502, 503 without Retry-After, 504 and
	// any other 5xx but 501): find out before sending again.
	Ambiguous
	// Permanent: refused for good (4xx but 429, 501, an unusable URL or
	// certificate); sending again cannot help.
	Permanent
)

// Classify says what a write's result means for its values: status is the
// HTTP status of its answer (0 without one), retryAfter whether that answer
// carried Retry-After, err the failure without an answer (an *Error, whose
// MaybeSent tells whether the request may have reached the server). For a
// Verified write only a failed dial and 429 are NotStored: a 503 with
// Retry-After may come from a proxy after the platform stored.
func Classify(kind Kind, status int, retryAfter bool, err error) Outcome {
	if status == 0 {
		if err == nil {
			return Stored
		}
		var te *Error
		if errors.As(err, &te) && !te.MaybeSent {
			if permanent(te.Err) {
				return Permanent
			}
			return NotStored
		}
		return Ambiguous
	}
	switch {
	case status >= 200 && status < 300:
		return Stored
	case status == http.StatusTooManyRequests,
		status == http.StatusServiceUnavailable && retryAfter && kind != Verified:
		return NotStored
	case status >= 500 && status != http.StatusNotImplemented:
		return Ambiguous
	}
	return Permanent
}

func permanent(err error) bool {
	var cv *x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "unsupported protocol scheme") ||
		strings.Contains(msg, "invalid header") ||
		strings.Contains(msg, "certificate")
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

// stripURL removes the URL that *url.Error carries, keeping its cause.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// AttemptTimeout is how long one attempt may take (the HTTP client's
// Timeout), or zero when it is unbounded.
func (t *Transport) AttemptTimeout() time.Duration { return t.rc.HTTPClient.Timeout }
