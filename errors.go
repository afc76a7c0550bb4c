package thethings

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/thethings-go/thethings/internal/spool"
	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

// Sentinel errors. Match them with errors.Is; an [*APIError] carries the details.
var (
	// ErrNoToken: an empty thing token was given.
	ErrNoToken = errors.New("thethings: no thing token")
	// ErrUnauthorized: the platform refused the credentials (HTTP 401, or 403 not caused by rate limiting).
	ErrUnauthorized = errors.New("thethings: unauthorized")
	// ErrNotFound: something named in the request does not exist (HTTP 404).
	ErrNotFound = errors.New("thethings: not found")
	// ErrThingNotFound: the thing token is unknown to the platform. It also matches ErrNotFound.
	ErrThingNotFound = errors.New("thethings: thing not found")
	// ErrResourceNotFound: the key was never written. It also matches ErrNotFound.
	ErrResourceNotFound = errors.New("thethings: resource not found")
	// ErrActivationCodeNotFound: the activation code is unknown, used, or not for that product.
	ErrActivationCodeNotFound = errors.New("thethings: activation code not found")
	// ErrRateLimited: the platform asked to slow down (HTTP 429); see APIError.RetryAfter.
	ErrRateLimited = errors.New("thethings: rate limited")
	// ErrInvalidKey: a resource key breaks the platform's key rules.
	ErrInvalidKey = wire.ErrInvalidKey
	// ErrInvalidValue: a value, geo position, time or argument cannot be sent.
	ErrInvalidValue = wire.ErrInvalidValue
	// ErrInvalidToken: a thing token holds a space or a control character
	// (often a newline left over from the file it was read from).
	ErrInvalidToken = errors.New("thethings: invalid thing token")
	// ErrInvalidOption: an option is out of range or malformed, or a nil
	// context was passed.
	ErrInvalidOption = errors.New("thethings: invalid option")
	// ErrInvalidCursor: a read cursor was not made by this SDK, or was altered.
	ErrInvalidCursor = errors.New("thethings: invalid cursor")
	// ErrOutcomeUnknown: the request may or may not have been processed (the
	// connection failed after it was sent, or the platform answered 5xx).
	ErrOutcomeUnknown = errors.New("thethings: outcome unknown")
	// ErrWriterClosed: a value was added to a closed [Writer].
	ErrWriterClosed = errors.New("thethings: writer closed")
	// ErrIdleTimeout: a subscription received nothing, not even a keep-alive, for too long.
	ErrIdleTimeout = errors.New("thethings: subscription idle timeout")
	// ErrPaginationStalled: the platform's answers make no progress (more
	// values share one timestamp than a page can hold).
	ErrPaginationStalled = errors.New("thethings: pagination stalled")
	// ErrFrameTooLarge: a subscription frame was larger than the limit
	// (see WithMaxFrameSize). The frame is skipped; the subscription goes on.
	ErrFrameTooLarge = errors.New("thethings: subscription frame too large")
	// ErrSpoolLocked: another Writer, in this process or another, has the
	// spool directory open ([Client.NewWriter]).
	ErrSpoolLocked = spool.ErrLocked
	// ErrSpoolCorrupt: a spool file is damaged in a way no crash or power
	// cut explains (what they leave, a record cut short or zeroed at the
	// end, is dropped: it was never acknowledged), or is not a regular file
	// the Writer made ([Client.NewWriter]). The error names the file.
	ErrSpoolCorrupt = spool.ErrCorrupt
	// ErrSpoolForeign: the spool directory holds the values of another
	// thing (a spool records a hash of its thing's token): a Writer never
	// sends them with this client's token ([Client.NewWriter]).
	ErrSpoolForeign = spool.ErrForeign
)

// APIError is an answer of the platform other than success.
type APIError struct {
	StatusCode int           // HTTP status code
	Status     string        // the platform's "status" field, usually "error"
	Code       int           // the platform's "code" field, when present
	Message    string        // the platform's "message", thing token redacted
	Method     string        // HTTP method of the request
	Path       string        // request path, thing token redacted
	RetryAfter time.Duration // from the Retry-After header of 429 and 503 answers
}

// Error reads "thethings: METHOD PATH: STATUS: message", token redacted.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "thethings: %s %s: %d %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Is maps the error onto the sentinel errors: 401 → ErrUnauthorized; 404 →
// ErrNotFound and, by the platform's message, ErrThingNotFound or
// ErrResourceNotFound; "activation code not found" → ErrActivationCodeNotFound;
// 429 (and 403 for rate limits) → ErrRateLimited.
func (e *APIError) Is(target error) bool {
	msg := strings.ToLower(e.Message)
	rateLimited := e.StatusCode == http.StatusTooManyRequests ||
		(e.StatusCode == http.StatusForbidden && strings.Contains(msg, "rate limit"))
	switch target {
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized || (e.StatusCode == http.StatusForbidden && !rateLimited)
	case ErrRateLimited:
		return rateLimited
	case ErrActivationCodeNotFound:
		return strings.Contains(msg, "activation code not found")
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound || strings.Contains(msg, "activation code not found")
	case ErrThingNotFound:
		return e.StatusCode == http.StatusNotFound && isThingMessage(msg)
	case ErrResourceNotFound:
		return e.StatusCode == http.StatusNotFound && strings.Contains(msg, "resource not found")
	}
	return false
}

func isThingMessage(msg string) bool {
	return strings.Contains(msg, "thing token") || strings.Contains(msg, "thing with")
}

// errorf is fmt.Errorf with the prefix "thethings: " once (see wire.Errorf).
func errorf(format string, args ...any) error { return wire.Errorf(format, args...) }

func optionError(format string, args ...any) error {
	return errorf("thethings: %s: %w", fmt.Sprintf(format, args...), ErrInvalidOption)
}

// apiError reads the platform's error envelope (at most 64 KiB).
func (c *Client) apiError(resp *http.Response, method, path string) *APIError {
	e := &APIError{StatusCode: resp.StatusCode, Method: method, Path: path, RetryAfter: transport.RetryAfterOf(resp, time.Now())}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if env, ok := wire.ParseEnvelope(data); ok {
		c.fromEnvelope(e, env)
	} else {
		e.Message = cutText(c.redact(strings.TrimSpace(string(data))), 200)
	}
	return e
}

// fromEnvelope gives e the platform's status, code and message, redacted
// before they are cut: a token straddling the cut would leave its first
// part behind.
func (c *Client) fromEnvelope(e *APIError, env wire.Envelope) {
	e.Status = cutText(c.redact(env.Status), maxQuote)
	e.Code = env.Code
	e.Message = cutText(c.redact(env.Message), maxMessage)
}

// WriteError reports values that were not written. Every failure of
// [Client.Write] and every failed request of a [Writer] is one: Values lists
// exactly the values concerned, in the order they were given. A Writer's
// error handler also gets one without Values when delivery pauses (see
// [Writer]): the values are kept, not handed back.
//
// Unknown tells their fate. When false, the platform certainly did not store
// them (the request was refused, never sent, or they failed validation) and
// writing them again is safe. When true, the request may have been stored (the
// connection failed after it was sent, or the platform answered 5xx), so
// writing them again may store them twice. Such an error matches
// [ErrOutcomeUnknown] with errors.Is.
//
// A split write whose requests end differently returns one WriteError per
// fate joined with errors.Join: errors.As finds the first, and
// [FailedValues] collects the values of all.
type WriteError struct {
	Values  []Value // the values not written, or whose fate is unknown
	Unknown bool    // true when the platform may have stored them
	Err     error   // the cause
}

// Error says how many values were not written, or may not have been, and why.
func (e *WriteError) Error() string {
	cause := "unknown error"
	if e.Err != nil {
		cause = strings.TrimPrefix(e.Err.Error(), "thethings: ")
	}
	if e.Unknown {
		return fmt.Sprintf("thethings: %s may or may not have been written (outcome unknown): %s", countValues(len(e.Values)), cause)
	}
	if len(e.Values) == 0 {
		return "thethings: " + cause // a pause of a Writer: no value ends
	}
	return fmt.Sprintf("thethings: %s not written: %s", countValues(len(e.Values)), cause)
}

// countValues is "1 value" or "n values".
func countValues(n int) string {
	if n == 1 {
		return "1 value"
	}
	return strconv.Itoa(n) + " values"
}

// Unwrap returns the cause.
func (e *WriteError) Unwrap() error { return e.Err }

// FailedValues collects the values of every [*WriteError] in err, walking
// errors joined with errors.Join and wrapped ones: notWritten were certainly
// not stored and may be written again; unknown may have been stored. Both
// are nil when err holds no WriteError.
func FailedValues(err error) (notWritten, unknown []Value) {
	var walk func(error)
	walk = func(err error) {
		switch x := err.(type) {
		case nil:
		case *WriteError:
			if x.Unknown {
				unknown = append(unknown, x.Values...)
			} else {
				notWritten = append(notWritten, x.Values...)
			}
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return notWritten, unknown
}

// Is reports whether target is ErrOutcomeUnknown and the values' fate is
// unknown.
func (e *WriteError) Is(target error) bool {
	return target == ErrOutcomeUnknown && e.Unknown
}

// Retryable reports whether the call that returned err may succeed if made
// again later, unchanged: true for a network failure, an answer cut
// mid-way, 408, 429 and a 403 that asks to slow down, and 5xx answers but
// 501; false for nil, refusals (401, 403, 404 and other 4xx, 501), invalid
// input, a context that ended, and [ErrPaginationStalled]. It walks
// wrapped and joined errors: a [*WriteError] or [*ReadError] is retryable
// when its cause is. The decision is the one the SDK's own retries make.
//
// A retryable write may have been stored already ([ErrOutcomeUnknown]):
// see [FailedValues] for what to send again.
func Retryable(err error) bool {
	if err == nil ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrPaginationStalled) || errors.Is(err, ErrInvalidValue) ||
		errors.Is(err, ErrInvalidKey) || errors.Is(err, ErrInvalidOption) ||
		errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrInvalidCursor) ||
		errors.Is(err, ErrNoToken) || errors.Is(err, ErrWriterClosed) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return transport.Transient(ae.StatusCode, nil) || refusal(ae) == transport.Passing
	}
	var cause error
	var te *transport.Error
	var ce *connError
	switch {
	case errors.As(err, &te):
		cause = te.Err
	case errors.As(err, &ce):
		cause = ce.err
	default:
		var ne net.Error
		if !errors.As(err, &ne) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) && !errors.Is(err, ErrIdleTimeout) {
			return false // not a failure of the network: nothing to wait for
		}
		cause = err
	}
	return transport.Transient(0, cause)
}

// refusal sorts err, the failure of a request that got an answer other
// than 2xx or could not be sent, for the values of the batch.
func refusal(err error) transport.Refusal {
	var ae *APIError
	if !errors.As(err, &ae) {
		return transport.Refuse(0, false, false)
	}
	return transport.Refuse(ae.StatusCode, ae.Status != "", errors.Is(ae, ErrRateLimited))
}
