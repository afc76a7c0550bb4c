package wire

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Envelope is the platform's status answer, {"status":..,"code":..,
// "message":..}: the body of every refusal, and the first frame of a
// subscription.
type Envelope struct {
	Status  string
	Code    int    // 0 when absent or not a number ("code":"404" counts)
	Message string // a JSON string's text, else the member's raw JSON
}

// ParseEnvelope reads b as an Envelope; ok is false when b is not a JSON
// object, or its "status" is not a string (then b is not the platform's
// envelope, whatever else it holds).
func ParseEnvelope(b []byte) (env Envelope, ok bool) {
	var raw struct {
		Status  string          `json:"status"`
		Code    json.RawMessage `json:"code"`
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(b, &raw) != nil {
		return env, false
	}
	env.Status = raw.Status
	env.Code, _ = strconv.Atoi(strings.Trim(string(raw.Code), `"`))
	if json.Unmarshal(raw.Message, &env.Message) != nil {
		env.Message = string(raw.Message)
	}
	return env, true
}
