package thethings

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

// Geo is a position: latitude in [-90, 90], longitude in [-180, 180].
type Geo struct {
	Lat  float64
	Long float64
}

// Value is one reading of a resource (key). Written values may carry any
// JSON value: numbers, strings, bools, maps, slices, structs, or a
// json.RawMessage passed through as it is. Read values carry what the
// platform returned (see the accessors in resources.go).
type Value struct {
	Key      string
	Value    any
	Geo      *Geo      // where the reading was taken, or nil
	Datetime time.Time // when it was taken; zero means "now" on the platform's clock
}

// Magic resource keys.
const (
	keyGeo      = wire.KeyGeo
	keySettings = wire.KeySettings
)

// Batches of a Write: values per request.
const (
	defaultBatchSize = 100
	maxBatchSize     = 1000
)

// WriteError reports values that were not written. Every failure of
// [Client.Write] and every failed request of a [Writer] is one: Values lists
// exactly the values concerned, in the order they were given.
//
// Unknown tells their fate. When false, the platform certainly did not store
// them (the request was refused, never sent, or they failed validation) and
// writing them again is safe. When true, the request may have been stored (the
// connection failed after it was sent, or the platform answered 5xx), so
// writing them again may store them twice. Such an error matches
// [ErrOutcomeUnknown] with errors.Is.
//
// A split write whose requests end differently returns one WriteError per
// fate joined with errors.Join: errors.As finds the first, and walking the
// join (an interface{ Unwrap() []error }) finds all.
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

// Is reports whether target is ErrOutcomeUnknown and the values' fate is
// unknown.
func (e *WriteError) Is(target error) bool {
	return target == ErrOutcomeUnknown && e.Unknown
}

// WriteOption configures one write, or every write of a [Writer] through
// [WithWriteOptions].
type WriteOption func(*writeConfig)

type writeConfig struct {
	noStore     bool
	noBroadcast bool
}

// WithStore(false) sends the values to the thing's subscribers without
// storing them (?store=false). Values are stored by default.
func WithStore(store bool) WriteOption {
	return func(c *writeConfig) { c.noStore = !store }
}

// WithBroadcast(false) stores the values without pushing them to the thing's
// subscribers (?broadcast=false). Values are broadcast by default.
func WithBroadcast(broadcast bool) WriteOption {
	return func(c *writeConfig) { c.noBroadcast = !broadcast }
}

func newWriteConfig(opts []WriteOption) (writeConfig, error) {
	var wc writeConfig
	for _, o := range opts {
		if o == nil {
			return wc, optionError("nil write option")
		}
		o(&wc)
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
			return &WriteError{Values: slices.Clone(values[lo:]), Err: fmt.Errorf("thethings: write: %w", err)}
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
			Err:    fmt.Errorf("thethings: not sent: request %d of %d failed before it", i+1, len(bodies)),
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
