package transport

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/hashicorp/go-retryablehttp"
)

// The predicates below are the SDK's retry rule, the one every retrying
// part applies through Loop.

// Outcome is what the answer to a write says about its values.
type Outcome int

const (
	// Stored: a 2xx answer.
	Stored Outcome = iota
	// NotStored: certainly not stored, for a passing reason (a dial
	// failure or a request that never left this process, 408, 429, 503
	// with Retry-After): send again after a wait.
	NotStored
	// Ambiguous: the values may have been stored (a connection lost or a
	// timeout after sending, 500, 502, 503 without Retry-After, 504 and
	// any other 5xx but 501): find out before sending again.
	Ambiguous
	// Permanent: refused (4xx but 408 and 429, 501, an unusable URL or
	// certificate); sending the same request at once cannot help. Refuse
	// tells whether the values or the thing were refused.
	Permanent
)

// Classify says what a request's result means for what it carried: status
// is the HTTP status of its answer (0 without one), retryAfter whether that
// answer carried Retry-After, err the failure without an answer (an
// *Error, whose MaybeSent tells whether the request may have reached the
// server). A 503 with Retry-After stored nothing, except for a Verified
// write: a proxy may answer so after the platform stored.
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
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout,
		status == http.StatusServiceUnavailable && retryAfter && kind != Verified:
		return NotStored
	case status >= 500 && status != http.StatusNotImplemented:
		return Ambiguous
	}
	return Permanent
}

// Decide is the retry rule for one attempt: given the request's kind,
// whether the caller accepts duplicate writes, and how the attempt ended
// (an answer resp, or an error err without one), it reports whether the
// request may be sent again, and whether this attempt may have been
// processed by the server (the outcome is unknown). sent tells whether a
// failed attempt may have reached the server: false only when it certainly
// did not (a failed dial, nothing written).
func Decide(kind Kind, retryWrites bool, resp *http.Response, err error, sent bool) (retry, maybeProcessed bool) {
	if err != nil {
		return DecideError(kind, retryWrites, err, sent)
	}
	if resp == nil {
		return false, false
	}
	return DecideAnswer(kind, retryWrites, resp.StatusCode, resp.Header.Get("Retry-After") != "")
}

// DecideAnswer is Decide for an answer: its status code, and whether it
// carried a Retry-After header. It follows Classify: what stored nothing is
// sent again (but activation), what may have been processed only when the
// kind allows.
func DecideAnswer(kind Kind, retryWrites bool, status int, retryAfter bool) (retry, maybeProcessed bool) {
	switch Classify(kind, status, retryAfter, nil) {
	case NotStored:
		return kind != Once, false
	case Ambiguous:
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

// Transient reports whether a request that failed so may succeed if sent
// again later, whatever its kind: for an answer (status > 0) 408, 429 and
// 5xx but 501; without one (status 0), err is not the context's end nor a
// permanent failure (an unusable URL or certificate).
func Transient(status int, err error) bool {
	if status > 0 {
		retry, _ := DecideAnswer(Stream, false, status, false)
		return retry
	}
	retry, _ := DecideError(Idempotent, false, err, true)
	return retry
}

// repeatable reports whether a request that may have been processed may be
// sent again: reads always, writes only when the caller accepts duplicates,
// activation never.
func repeatable(kind Kind, retryWrites bool) bool {
	return kind == Idempotent || kind == Stream || kind == Write && retryWrites
}

// permanent reports a failure without an answer that no retry can fix.
// go-retryablehttp's rule names most (a bad scheme or header, an untrusted
// certificate, too many redirects); the rest is certificate errors however
// they are wrapped.
func permanent(err error) bool {
	var cv *x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) {
		return true
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		ue = &url.Error{Op: "Do", URL: "", Err: err}
	}
	if retry, _ := retryablehttp.DefaultRetryPolicy(context.Background(), nil, ue); !retry {
		return true
	}
	return strings.Contains(err.Error(), "certificate")
}
