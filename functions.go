package thethings

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/thethings-go/thethings/internal/transport"
)

// maxFunctionName bounds a cloud function's name.
const maxFunctionName = 128

// CallFunction runs the thing's cloud-code function name on the platform
// (POST things/{token}/code/functions/{name} with {"params": params}) and
// returns its answer as raw JSON, at most 1 MiB (a larger one is an error
// matching ErrInvalidValue; an empty one is JSON null). The platform stops
// a function after 15 s.
//
// A function has effects, so a call is never sent twice once it may have
// reached the platform: not after a 5xx answer, a connection cut, or a
// timeout; such a failure matches ErrOutcomeUnknown. Only a request that
// certainly never left this process is sent again. A 429 answer
// (ErrRateLimited) is returned too: the function did not run, and the
// caller may call again after the [APIError]'s RetryAfter. name must be letters,
// digits, '-' and '_', and params must encode as JSON; else the error
// matches ErrInvalidValue, before any I/O.
func (c *Client) CallFunction(ctx context.Context, name string, params any) (json.RawMessage, error) {
	if !validFunctionName(name) {
		return nil, errorf("thethings: function name %q: want 1 to %d letters, digits, '-' or '_': %w", shorten(name), maxFunctionName, ErrInvalidValue)
	}
	body, err := json.Marshal(struct {
		Params any `json:"params"`
	}{params})
	if err != nil {
		return nil, errorf("thethings: function %s: params: %w: %w", name, err, ErrInvalidValue)
	}
	var buf bytes.Buffer
	rt := c.thingRoute("code", "functions", name)
	if _, err := c.do(ctx, &request{kind: transport.Once, method: http.MethodPost, rt: rt, body: body, buf: &buf}); err != nil {
		return nil, err // matches ErrOutcomeUnknown when it may have run
	}
	raw := bytes.TrimSpace(buf.Bytes())
	if len(raw) == 0 {
		return json.RawMessage("null"), nil
	}
	if !json.Valid(raw) {
		return nil, errorf("thethings: POST %s: answer is not JSON: %w", c.displayPath(rt), ErrInvalidValue)
	}
	return json.RawMessage(bytes.Clone(raw)), nil
}

func validFunctionName(name string) bool {
	if name == "" || len(name) > maxFunctionName {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

// Resources lists the keys the thing has values for (GET
// things/{token}/resources), as the platform sends them.
func (c *Client) Resources(ctx context.Context) ([]string, error) {
	var answer struct {
		Resources []string `json:"resources"`
	}
	if _, err := c.do(ctx, &request{kind: transport.Idempotent, method: http.MethodGet, rt: c.thingRoute("resources"), out: &answer}); err != nil {
		return nil, err
	}
	if answer.Resources == nil {
		answer.Resources = []string{}
	}
	return answer.Resources, nil
}
