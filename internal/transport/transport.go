// Package transport sends the SDK's HTTP requests through go-retryablehttp
// with a retry policy that knows which requests are safe to repeat.
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
)

// String names the kind for logs.
func (k Kind) String() string {
	switch k {
	case Idempotent:
		return "read"
	case Write:
		return "write"
	default:
		return "once"
	}
}

// Policy bounds retries. Zero MinWait and MaxWait mean no wait.
type Policy struct {
	MaxRetries  int
	MinWait     time.Duration
	MaxWait     time.Duration
	RetryWrites bool
}

// Transport sends requests with retries. It is immutable and safe for
// concurrent use.
type Transport struct {
	HTTP   *http.Client
	Policy Policy
	Logger *slog.Logger // nil: silent
	Redact func(string) string
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
	// Attempts is the number of times the request was sent or tried.
	Attempts int
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
		return nil, Result{}, &Error{Method: r.Method, Path: r.Path, Err: stripURL(err), redact: t.Redact}
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	rc := &retryablehttp.Client{
		HTTPClient:     t.HTTP,
		RetryWaitMin:   t.Policy.MinWait,
		RetryWaitMax:   t.Policy.MaxWait,
		RetryMax:       t.Policy.MaxRetries,
		CheckRetry:     st.check,
		Backoff:        st.backoff,
		ErrorHandler:   retryablehttp.PassthroughErrorHandler,
		RequestLogHook: st.before,
	}
	resp, err := rc.Do(req)
	res := Result{Attempts: st.attempts, MaybeProcessed: st.maybe}
	if err != nil {
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if st.attemptErr != nil && !errors.Is(st.attemptErr, err) && ctx.Err() != nil {
			// Cancelled while waiting to retry: keep what the last attempt met.
			err = fmt.Errorf("%w (after: %w)", ctx.Err(), stripURL(st.attemptErr))
		}
		return nil, res, &Error{Method: r.Method, Path: r.Path, Err: stripURL(err), MaybeSent: st.maybe, redact: t.Redact}
	}
	return resp, res, nil
}

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
	wait       time.Duration
	attemptErr error
}

func (c *call) before(_ retryablehttp.Logger, _ *http.Request, _ int) {
	c.gotConn.Store(false)
	c.wrote.Store(false)
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

func (c *call) backoff(_, _ time.Duration, _ int, _ *http.Response) time.Duration {
	return c.wait
}

// check decides whether to send the request again.
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
	wait := Backoff(c.t.Policy, c.attempts-1, resp)
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= wait {
		// The context would end before the next attempt: return what we have.
		return false, nil
	}
	c.wait = wait
	if l := c.t.Logger; l != nil {
		attrs := []any{"op", c.method + " " + c.path, "attempt", c.attempts, "wait", wait}
		if resp != nil {
			attrs = append(attrs, "status", resp.StatusCode)
		}
		if err != nil {
			msg := stripURL(err).Error()
			if c.t.Redact != nil {
				msg = c.t.Redact(msg)
			}
			attrs = append(attrs, "error", msg)
		}
		l.LogAttrs(ctx, slog.LevelDebug, "thethings: retrying request", argsToAttrs(attrs)...)
	}
	return true, nil
}

func argsToAttrs(args []any) []slog.Attr {
	out := make([]slog.Attr, 0, len(args)/2)
	for i := 0; i+1 < len(args); i += 2 {
		out = append(out, slog.Any(args[i].(string), args[i+1]))
	}
	return out
}

// Decide is the retry policy for one attempt. It reports whether the request
// may be sent again, and whether this attempt may have been processed by the
// server. sent tells whether a failed attempt may have reached the server.
func Decide(kind Kind, retryWrites bool, resp *http.Response, err error, sent bool) (retry, maybeProcessed bool) {
	if err != nil {
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
	if resp == nil {
		return false, false
	}
	code := resp.StatusCode
	switch {
	case code == http.StatusTooManyRequests:
		return kind != Once, false
	case code == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		return kind != Once, false
	case code == http.StatusNotImplemented:
		return false, false
	case code >= 500:
		return repeatable(kind, retryWrites), true
	}
	return false, false
}

// repeatable reports whether a request that may have been processed may be
// sent again: reads always, writes only when the caller accepts duplicates,
// activation never.
func repeatable(kind Kind, retryWrites bool) bool {
	return kind == Idempotent || kind == Write && retryWrites
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

// Backoff returns how long to wait before retry number n+1 (n from 0):
// the server's Retry-After on 429 and 503 when given and positive, else MinWait*2^n with
// equal jitter; never more than MaxWait.
func Backoff(p Policy, n int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		// Retry-After: 0, or a date already past, is no reason to hammer
		// the server: the normal backoff applies.
		if d, ok := RetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok && d > 0 {
			return min(d, p.MaxWait)
		}
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
