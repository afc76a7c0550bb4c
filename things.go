package thethings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

// Batches of a Write: values per request.
const (
	defaultBatchSize = 100
	maxBatchSize     = 1000
)

// WriteOption configures one write, or every write of a [Writer] through
// [WithWriteOptions].
//
// Like every option type of the package, it returns an error for an
// invalid setting, which the call it is passed to returns.
type WriteOption func(*writeConfig) error

type writeConfig struct {
	noStore     bool
	noBroadcast bool
}

// WithStore(false) sends the values to the thing's subscribers without
// storing them (?store=false). Values are stored by default.
func WithStore(store bool) WriteOption {
	return func(c *writeConfig) error {
		c.noStore = !store
		return nil
	}
}

// WithBroadcast(false) stores the values without pushing them to the thing's
// subscribers (?broadcast=false). Values are broadcast by default.
func WithBroadcast(broadcast bool) WriteOption {
	return func(c *writeConfig) error {
		c.noBroadcast = !broadcast
		return nil
	}
}

func newWriteConfig(opts []WriteOption) (writeConfig, error) {
	var wc writeConfig
	for _, o := range opts {
		if o == nil {
			return wc, optionError("nil write option")
		}
		if err := o(&wc); err != nil {
			return wc, err
		}
	}
	if wc.noStore && wc.noBroadcast {
		return wc, optionError("WithStore(false) and WithBroadcast(false) together would drop the values")
	}
	return wc, nil
}

// writeRoute is things/{token} with the store and broadcast switches.
func (c *Client) writeRoute(wc writeConfig) route {
	rt := c.thingRoute()
	q := ""
	switch {
	case wc.noStore:
		q = "?store=false"
	case wc.noBroadcast:
		q = "?broadcast=false"
	}
	rt.path += q
	rt.redacted += q
	return rt
}

// Write writes values in as few requests as possible: one per 100 values,
// sent one after the other in order. Values need not be sorted by time; a
// value without Datetime gets the platform's clock. Keys may be magic
// ($geo, $settings, $settings.<path>). An empty slice is a no-op and returns
// nil without any request.
//
// Every value is checked before anything is sent: an invalid key, NaN or an
// infinity, a value JSON cannot encode, a position out of range or a datetime
// outside the years 1..9999 fails the whole call with a [*WriteError] listing
// all values, whose Err matches [ErrInvalidKey] or [ErrInvalidValue] and
// names the index and key of the offending value.
//
// Any other failure is a [*WriteError] too, listing exactly the values not
// written: those of the failed request and of every later one. When the
// failed request may have been stored (see [WriteError].Unknown), its values
// and the later ones come as two WriteErrors joined with errors.Join.
//
// Requests the platform refused without storing (408, 429, a failed dial,
// and for values without a Datetime 503 with Retry-After) are retried under the
// client's [RetryPolicy]. When a request's outcome is ambiguous (a
// connection lost after sending, a timeout, a 5xx), its values with a
// Datetime are not guessed at: Write reads their keys back over the
// request's time span, counts what the platform holds, and sends again only
// what is missing, within MaxRetries; values still in doubt then are a
// WriteError with Unknown. Values without a Datetime cannot be verified:
// they are reported Unknown at once, unless [RetryPolicy.RetryWrites] sends
// them again blindly. Any 2xx answer is success, whatever its body.
func (c *Client) Write(ctx context.Context, values []Value, opts ...WriteOption) error {
	if len(values) == 0 {
		return nil
	}
	if err := checkContext(ctx); err != nil {
		return &WriteError{Values: slices.Clone(values), Err: err}
	}
	wc, err := newWriteConfig(opts)
	if err != nil {
		return &WriteError{Values: slices.Clone(values), Err: err}
	}
	bodies := make([][]byte, 0, (len(values)+defaultBatchSize-1)/defaultBatchSize)
	for lo := 0; lo < len(values); lo += defaultBatchSize {
		hi := min(lo+defaultBatchSize, len(values))
		body, err := appendBatch(nil, values[lo:hi], lo, false)
		if err != nil {
			return &WriteError{Values: slices.Clone(values), Err: err}
		}
		bodies = append(bodies, body)
	}
	for i := range bodies {
		lo := i * defaultBatchSize
		hi := min(lo+defaultBatchSize, len(values))
		err := c.writeBatch(ctx, wc, values[lo:hi], bodies[i])
		if err == nil {
			continue
		}
		if hi == len(values) {
			return err
		}
		if we, ok := err.(*WriteError); ok && !we.Unknown {
			// Not written, like every later value: one fate, one error.
			we.Values = append(we.Values, values[hi:]...)
			return we
		}
		rest := &WriteError{
			Values: slices.Clone(values[hi:]),
			Err:    errorf("thethings: not sent: request %d of %d failed before it", i+1, len(bodies)),
		}
		return errors.Join(err, rest)
	}
	return nil
}

// writeBatch delivers one request's values: it sends them, reads back an
// ambiguous outcome of the values with a Datetime and sends again only what
// is missing, within the client's RetryPolicy.
func (c *Client) writeBatch(ctx context.Context, wc writeConfig, batch []Value, body []byte) error {
	d := &delivery{c: c, wc: wc, orig: batch, retryWrites: c.retry.RetryWrites, body: body}
	d.start(false)
	var failed []error
	var done bool
	// The transport has already retried what certainly stored nothing; an
	// ambiguous outcome or a failed read back is retried here, as often as
	// the policy allows.
	loop := transport.Loop{Policy: c.tr.Policy, Max: c.retry.MaxRetries, Deadline: true}
	last, end := loop.Run(ctx, func(ctx context.Context) transport.Step {
		if err := ctx.Err(); err != nil {
			return transport.Step{Err: errorf("thethings: write: %w", err)}
		}
		r := d.step(ctx)
		for _, f := range r.failed {
			failed = append(failed, f)
		}
		done = r.done
		return transport.Step{Err: r.err, Retry: !r.done && !r.paused && d.maybe, RetryAfter: r.retryAfter}
	})
	switch {
	case done:
		return joinErrors(failed)
	case end == transport.Cut:
		return d.giveUp(failed, errorf("thethings: write: %w", ctx.Err()))
	}
	return d.giveUp(failed, last.Err)
}

// joinErrors is errors.Join, but one error is returned as it is.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// postValues sends one write request.
func (c *Client) postValues(ctx context.Context, kind transport.Kind, rt route, body []byte) error {
	// Any 2xx is success: the platform's documents show two different bodies.
	_, err := c.do(ctx, &request{kind: kind, method: http.MethodPost, rt: rt, body: body, verified: true})
	return err
}

// fields gives wire the fields of values[i].
func fields(values []Value) wire.Fields {
	return func(i int) (string, any, *wire.Geo, time.Time) {
		v := &values[i]
		return v.Key, v.Value, (*wire.Geo)(v.Geo), v.Datetime
	}
}

// appendBatch appends {"values":[...]} for values to b, validating them
// unless checkItem passed them all (checked). The index of a refused value
// in an error is counted from base.
func appendBatch(b []byte, values []Value, base int, checked bool) ([]byte, error) {
	return wire.AppendBatch(b, len(values), base, fields(values), checked)
}

// checkItem reports what appendBatch would refuse.
func checkItem(v *Value) error {
	return wire.CheckItem(v.Key, v.Value, (*wire.Geo)(v.Geo), v.Datetime)
}

// Activate activates a thing with an activation code and returns a client
// for its new thing token. productID may be "" when the account has one
// product. Activation is never retried once the request may have reached the
// platform: if the answer is lost, the error matches ErrOutcomeUnknown and
// the thing may have been activated (its token can be read in the panel).
func Activate(ctx context.Context, activationCode, productID string, opts ...Option) (*Client, error) {
	if err := checkContext(ctx); err != nil {
		return nil, err
	}
	if strings.TrimSpace(activationCode) == "" {
		return nil, errorf("thethings: empty activation code: %w", ErrInvalidValue)
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	anon := newClient("", "", cfg)
	body, err := json.Marshal(struct {
		ActivationCode string `json:"activationCode"`
		ProductID      string `json:"productId,omitempty"`
	}{activationCode, productID})
	if err != nil {
		return nil, errorf("thethings: encode activation: %w", err)
	}
	var out struct {
		Status     string `json:"status"`
		Message    string `json:"message"`
		ThingToken string `json:"thingToken"`
		ThingID    string `json:"thingId"`
	}
	rt := route{path: "things/", redacted: "things/"}
	if _, err := anon.do(ctx, &request{kind: transport.Once, method: http.MethodPost, rt: rt, body: body, out: &out}); err != nil {
		return nil, err
	}
	if out.ThingToken == "" {
		return nil, errorf("thethings: activation answered %q without a thing token: %w", shorten(out.Status), ErrOutcomeUnknown)
	}
	if err := checkToken(out.ThingToken); err != nil {
		return nil, errorf("thethings: activation answered an unusable thing token: %w", err)
	}
	return newClient(out.ThingToken, out.ThingID, cfg), nil
}

// ServerTime returns the platform's clock (GET utils/date), so that a device
// without a real-time clock can stamp its readings. Both answer formats of
// the endpoint are understood.
func (c *Client) ServerTime(ctx context.Context) (time.Time, error) {
	q := url.Values{"thingToken": {c.token()}, "format": {"UTC"}}
	rt := route{path: "utils/date?" + q.Encode(), redacted: "utils/date?format=UTC&thingToken=" + redacted}
	var out struct {
		Date json.RawMessage `json:"date"`
	}
	if _, err := c.do(ctx, &request{kind: transport.Idempotent, method: http.MethodGet, rt: rt, out: &out}); err != nil {
		return time.Time{}, err
	}
	t, err := parseServerDate(out.Date)
	if err == nil {
		c.clock.set(t, true)
	}
	return t, err
}

func parseServerDate(raw json.RawMessage) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	var t time.Time
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, errorf("thethings: server date: %w: %w", err, ErrInvalidValue)
		}
		var err error
		if t, err = ParseTime(s); err != nil {
			return time.Time{}, err
		}
	} else if sec, err := strconv.ParseFloat(string(raw), 64); err == nil && sec > 0 && sec < wire.UnixYear10000 {
		whole := int64(sec)
		t = time.Unix(whole, int64((sec-float64(whole))*1e9)).UTC().Truncate(time.Millisecond)
	} else {
		return time.Time{}, errorf("thethings: server date %q not understood: %w", shorten(string(raw)), ErrInvalidValue)
	}
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, errorf("thethings: server date %s outside the years 1..9999: %w", t.Format(time.RFC3339), ErrInvalidValue)
	}
	return t, nil
}
