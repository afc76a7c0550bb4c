package thethings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
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
// and the later ones come as two WriteErrors joined with errors.Join. A
// request whose outcome is unknown is not sent again unless
// [RetryPolicy.RetryWrites] is set; requests the platform refused without
// storing (429, 503 with Retry-After, a failed dial) are retried under the
// client's [RetryPolicy]. Any 2xx answer is success, whatever its body.
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
	rt := c.writeRoute(wc)
	for i, body := range bodies {
		lo := i * defaultBatchSize
		if err := ctx.Err(); err != nil {
			return &WriteError{Values: slices.Clone(values[lo:]), Err: errorf("thethings: write: %w", err)}
		}
		maybe, err := c.postValues(ctx, rt, body)
		if err == nil {
			continue
		}
		if !maybe {
			return &WriteError{Values: slices.Clone(values[lo:]), Err: err}
		}
		hi := min(lo+defaultBatchSize, len(values))
		first := &WriteError{Values: slices.Clone(values[lo:hi]), Unknown: true, Err: err}
		if hi == len(values) {
			return first
		}
		rest := &WriteError{
			Values: slices.Clone(values[hi:]),
			Err:    errorf("thethings: not sent: request %d of %d failed before it", i+1, len(bodies)),
		}
		return errors.Join(first, rest)
	}
	return nil
}

// postValues sends one write request. maybe reports that the values may
// have been stored although err is not nil.
func (c *Client) postValues(ctx context.Context, rt route, body []byte) (maybe bool, err error) {
	resp, maybe, err := c.send(ctx, transport.Write, http.MethodPost, rt, body)
	if err != nil {
		return maybe, err
	}
	// Any 2xx is success: the platform's documents show two different bodies.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	return false, nil
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
	if _, err := anon.call(ctx, transport.Once, http.MethodPost, rt, body, &out); err != nil {
		return nil, err
	}
	if out.ThingToken == "" {
		return nil, errorf("thethings: activation answered %q without a thing token: %w", out.Status, ErrOutcomeUnknown)
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
	q := url.Values{"thingToken": {c.token}, "format": {"UTC"}}
	rt := route{path: "utils/date?" + q.Encode(), redacted: "utils/date?format=UTC&thingToken=" + redacted}
	var out struct {
		Date json.RawMessage `json:"date"`
	}
	if _, err := c.call(ctx, transport.Idempotent, http.MethodGet, rt, nil, &out); err != nil {
		return time.Time{}, err
	}
	return parseServerDate(out.Date)
}

func parseServerDate(raw json.RawMessage) (time.Time, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, errorf("thethings: server date: %w", err)
		}
		return ParseTime(s)
	}
	if sec, err := strconv.ParseFloat(string(raw), 64); err == nil && sec > 0 {
		whole := int64(sec)
		return time.Unix(whole, int64((sec-float64(whole))*1e9)).UTC().Truncate(time.Millisecond), nil
	}
	return time.Time{}, errorf("thethings: server date %q not understood: %w", raw, ErrInvalidValue)
}
