// Package transport is the one place that decides, for every request the
// SDK sends, whether it may be sent again, whether a failed attempt may
// have been processed by the server (outcome unknown), and how long to wait
// first. It holds the SDK's one retry loop (Loop, in retry.go) and the
// predicates it applies (decide.go); unary HTTP calls go through
// Transport.Do, and the features that retry beyond one call (a write's
// read back, the Writer, Subscribe, the MQTT reconnect) run Loop with the
// same predicates and waits.
//
// Three kinds of request exist. Reads are idempotent and are retried on
// network errors, 408, 429 and 5xx but 501. Writes are sent again only when
// the server certainly did not store the values: the request never left
// this process, or the server answered 408, 429, or 503 with Retry-After, a
// rule that Verified writes (values with a Datetime, which are read back
// instead) narrow to 408 and 429. Activation is never repeated once it may have reached the
// server.
//
// Waits are exponential with jitter. Retry-After is honoured but clamped to
// the policy's MaxWait, and a retry whose wait would outlast the context's
// deadline is not attempted: the caller gets the last answer instead.
//
// The thing token lives in the URL path, so nothing here logs a URL or
// returns an error that carries one: errors carry a redacted path.
package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync/atomic"
	"time"
)

// Kind says how a request may be retried.
type Kind int

const (
	// Idempotent requests (GET) are retried on network errors, 408, 429 and 5xx but 501.
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
	// Stream requests (a subscription) are like Idempotent: a long
	// request timed out by the platform or a proxy (408) is opened again.
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
	hc     *http.Client
	logger *slog.Logger
	redact func(string) string
}

// New returns a Transport sending through hc under p. logger (nil: silent)
// gets a Debug line per retry; redact is applied to every error text and
// log line.
func New(hc *http.Client, p Policy, logger *slog.Logger, redact func(string) string) *Transport {
	return &Transport{Policy: p, hc: hc, logger: logger, redact: redact}
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

// Do sends r until handle accepts an answer, the answer or failure is
// final, or the policy says stop. handle gets every answer, whatever its
// status, and returns nil to accept it, or the error the answer means (the
// caller's *APIError for a refusal); Do closes the body after. An answer
// whose 2xx body is cut on the connection is a failed attempt like a lost
// connection: it is sent again if its kind allows, and handle starts over
// on the new answer. Without an answer the error is an *Error. maybe
// reports whether some attempt may have been processed by the server
// without its success being seen (a network error after the request was
// written, a cut answer, a 5xx but 501, or a 503 with Retry-After to a
// Verified write).
func (t *Transport) Do(ctx context.Context, r *Request, handle func(*http.Response) error) (maybe bool, err error) {
	var transportErr error // the last attempt's failure without an answer
	var status int         // the last attempt's answer
	loop := Loop{Policy: t.Policy, Max: t.Policy.MaxRetries, Deadline: true}
	if t.logger != nil {
		loop.OnWait = func(n int, wait time.Duration, s Step) {
			attrs := []slog.Attr{slog.String("op", r.Method+" "+r.Path), slog.Int("attempt", n), slog.Duration("wait", wait)}
			if status != 0 {
				attrs = append(attrs, slog.Int("status", status))
			}
			if transportErr != nil {
				attrs = append(attrs, slog.String("error", t.text(transportErr)))
			}
			t.logger.LogAttrs(ctx, slog.LevelDebug, "thethings: retrying request", attrs...)
		}
	}
	last, end := loop.Run(ctx, func(ctx context.Context) Step {
		resp, sent, err := t.send(ctx, r)
		status, transportErr = 0, nil
		var bad *badRequest
		if errors.As(err, &bad) {
			transportErr = bad.err
			return Step{Err: bad.err} // no retry can mend it
		}
		if err != nil {
			transportErr = err
			retry, m := DecideError(r.Kind, t.Policy.RetryWrites, err, sent)
			maybe = maybe || m
			return Step{Err: err, Retry: retry}
		}
		status = resp.StatusCode
		retry, m := DecideAnswer(r.Kind, t.Policy.RetryWrites, status, resp.Header.Get("Retry-After") != "")
		body := &watched{ReadCloser: resp.Body}
		if status >= 200 && status < 300 {
			resp.Body = body
		}
		err = handle(resp)
		resp.Body.Close()
		if err != nil && body.err != nil {
			// Cut mid-way: a failed attempt like a lost connection.
			retry, m = DecideError(r.Kind, t.Policy.RetryWrites, body.err, true)
		}
		if err == nil {
			return Step{}
		}
		maybe = maybe || m
		return Step{Err: err, Retry: retry, RetryAfter: RetryAfterOf(resp, time.Now())}
	})
	switch {
	case end == Cut && transportErr != nil:
		// Cancelled while waiting to retry: keep what the last attempt met.
		return maybe, t.fail(r, fmt.Errorf("%w (after: %w)", ctx.Err(), stripURL(transportErr)), maybe)
	case end == Cut:
		return maybe, t.fail(r, ctx.Err(), maybe)
	case last.Err != nil && transportErr != nil:
		return maybe, t.fail(r, stripURL(transportErr), maybe)
	}
	return maybe, last.Err
}

// send makes one attempt of r. sent reports whether a failed attempt may
// have reached the server: only a dial failure, or a connection on which
// not even the headers were written, proves it did not; a RoundTripper
// that reports no trace events (a mock, a custom transport) proves nothing.
func (t *Transport) send(ctx context.Context, r *Request) (resp *http.Response, sent bool, err error) {
	var getConn, gotConn, wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn:      func(string) { getConn.Store(true) },
		GotConn:      func(httptrace.GotConnInfo) { gotConn.Store(true) },
		WroteHeaders: func() { wrote.Store(true) },
	})
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, r.URL, body)
	if err != nil {
		return nil, false, &badRequest{err}
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err // ended before anything left this process
	}
	resp, err = t.hc.Do(req)
	if err == nil {
		return resp, true, nil
	}
	var op *net.OpError
	var dns *net.DNSError
	if errors.As(err, &op) && op.Op == "dial" || errors.As(err, &dns) {
		return nil, false, err
	}
	// Nothing left this process when a connection was asked for and never
	// got (a dial cut by ctx), or got and nothing written on it. A
	// RoundTripper that reports no events (a mock) proves nothing.
	notSent := getConn.Load() && !gotConn.Load() || gotConn.Load() && !wrote.Load()
	return nil, !notSent, err
}

// badRequest is send's failure when r cannot be made into a request.
type badRequest struct{ err error }

func (e *badRequest) Error() string { return e.err.Error() }

func (t *Transport) fail(r *Request, err error, maybe bool) *Error {
	return &Error{Method: r.Method, Path: r.Path, Err: err, MaybeSent: maybe, redact: t.redact}
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
func (t *Transport) AttemptTimeout() time.Duration { return t.hc.Timeout }
