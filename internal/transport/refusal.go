package transport

import "net/http"

// Refusal is what a refused request (a write or the read back of one)
// means for the values it carried: a refusal of the values, a refusal of
// the thing, or a passing one.
type Refusal int

const (
	// RefusesValues: the platform refused these values (a 400 in its own
	// JSON envelope). Sending them again cannot help: report them.
	RefusesValues Refusal = iota
	// Pause: the platform refused the thing, not the values (401, 403 but
	// a rate limit, 404, any other 4xx), or the answer is not the
	// platform's (no JSON envelope: a proxy's or a wrong URL's page), or
	// the request cannot be sent (an unusable URL or certificate). Keep
	// the values and try again later, slowly: someone can mend it.
	Pause
	// Passing: 408, 429, or a 403 that says it is a rate limit. Nothing
	// was stored: send again after a wait.
	Passing
)

// Refuse sorts a refusal: status is the answer's HTTP status (0 for a
// request that cannot be sent), envelope whether its body was the
// platform's JSON error envelope, rateLimited whether its message says it
// is a rate limit.
func Refuse(status int, envelope, rateLimited bool) Refusal {
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests,
		status == http.StatusForbidden && rateLimited:
		return Passing
	case status == http.StatusBadRequest && envelope:
		return RefusesValues
	}
	return Pause
}
