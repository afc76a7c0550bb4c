package thethings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/thethings-go/thethings/internal/transport"
)

// Geo is a position: latitude in [-90, 90], longitude in [-180, 180].
type Geo struct {
	Lat  float64
	Long float64
}

// validate reports a position out of range, NaN or infinite.
func (g Geo) validate() error {
	switch {
	case math.IsNaN(g.Lat) || math.IsNaN(g.Long) || math.IsInf(g.Lat, 0) || math.IsInf(g.Long, 0):
		return fmt.Errorf("thethings: geo %v,%v is not a number: %w", g.Lat, g.Long, ErrInvalidValue)
	case g.Lat < -90 || g.Lat > 90:
		return fmt.Errorf("thethings: latitude %v outside [-90, 90]: %w", g.Lat, ErrInvalidValue)
	case g.Long < -180 || g.Long > 180:
		return fmt.Errorf("thethings: longitude %v outside [-180, 180]: %w", g.Long, ErrInvalidValue)
	}
	return nil
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
	keyGeo      = "$geo"
	keySettings = "$settings"
)

// validateKey checks a resource key: letters, digits, '.', '-', '_'; or a
// magic key ($geo, $settings, $settings.<path>) when magic is true.
func validateKey(key string, magic bool) error {
	if key == "" {
		return fmt.Errorf("thethings: empty key: %w", ErrInvalidKey)
	}
	if strings.HasPrefix(key, "$") {
		if !magic {
			return fmt.Errorf("thethings: key %q: '$' is only for the magic resources: %w", key, ErrInvalidKey)
		}
		if key == keyGeo || key == keySettings {
			return nil
		}
		if path, ok := strings.CutPrefix(key, keySettings+"."); ok {
			return validateSettingPath(path)
		}
		return fmt.Errorf("thethings: key %q is no known magic resource ($geo, $settings, $settings.<path>): %w", key, ErrInvalidKey)
	}
	for i := 0; i < len(key); i++ {
		if !keyByte(key[i]) {
			return fmt.Errorf("thethings: key %q: character %q not allowed (letters, digits, '.', '-', '_'): %w", key, key[i], ErrInvalidKey)
		}
	}
	return nil
}

// validateSettingPath checks a dotted $settings path such as "a.b": non-empty
// segments of key characters.
func validateSettingPath(path string) error {
	if path == "" {
		return fmt.Errorf("thethings: empty settings path: %w", ErrInvalidKey)
	}
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			return fmt.Errorf("thethings: settings path %q has an empty segment: %w", path, ErrInvalidKey)
		}
		for i := 0; i < len(seg); i++ {
			if !keyByte(seg[i]) || seg[i] == '.' {
				return fmt.Errorf("thethings: settings path %q: character %q not allowed: %w", path, seg[i], ErrInvalidKey)
			}
		}
	}
	return nil
}

func keyByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '-' || b == '_'
}

// unixYear1 is 0001-01-01T00:00:00Z: datetimes are sent with years 1..9999.
const unixYear1 = -62135596800

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

// valueError names the offending value of a refused write.
type valueError struct {
	index int
	key   string
	err   error
}

func (e *valueError) Error() string {
	return fmt.Sprintf("thethings: values[%d] (key %q): %s", e.index, e.key, strings.TrimPrefix(e.err.Error(), "thethings: "))
}

func (e *valueError) Unwrap() error { return e.err }

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
		body, err := appendBatch(make([]byte, 0, batchSizeHint(values[lo:hi])), values[lo:hi], lo)
		if err != nil {
			return &WriteError{Values: slices.Clone(values), Err: err}
		}
		bodies = append(bodies, body)
	}
	rt := c.writeRoute(wc)
	for i := range bodies {
		lo := i * defaultBatchSize
		hi := min(lo+defaultBatchSize, len(values))
		err := c.writeBatch(ctx, rt, values[lo:hi], bodies[i])
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
			Err:    fmt.Errorf("thethings: not sent: request %d of %d failed before it", i+1, len(bodies)),
		}
		return errors.Join(err, rest)
	}
	return nil
}

// writeBatch delivers one request's values: it sends them, reads back an
// ambiguous outcome of the values with a Datetime and sends again only what
// is missing, within the client's RetryPolicy.
func (c *Client) writeBatch(ctx context.Context, rt route, batch []Value, body []byte) error {
	d := &delivery{c: c, rt: rt, orig: batch, retryWrites: c.retry.RetryWrites, body: body}
	d.start(false)
	p := transport.Policy{MinWait: c.retry.MinWait, MaxWait: c.retry.MaxWait}
	var failed []error
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return d.giveUp(failed, fmt.Errorf("thethings: write: %w", err))
		}
		r := d.step(ctx)
		for _, f := range r.failed {
			failed = append(failed, f)
		}
		if r.done {
			return joinErrors(failed)
		}
		// The transport has already retried what certainly stored
		// nothing; an ambiguous outcome or a failed read back is retried
		// here, as often as the policy allows.
		if !d.maybe || attempt >= c.retry.MaxRetries {
			return d.giveUp(failed, r.err)
		}
		wait := transport.Wait(p, attempt, r.retryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			return d.giveUp(failed, r.err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
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
	resp, _, err := c.send(ctx, kind, http.MethodPost, rt, body)
	if err != nil {
		return err
	}
	// Any 2xx is success: the platform's documents show two different bodies.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	return nil
}

// batchSizeHint estimates the encoded size of values, so that a batch is
// usually encoded without growing its buffer.
func batchSizeHint(values []Value) int {
	n := len(`{"values":[]}`)
	for i := range values {
		v := &values[i]
		n += len(`{"key":"","value":},`) + len(v.Key) + 24
		if s, ok := v.Value.(string); ok {
			n += len(s) + 2
		}
		if v.Geo != nil {
			n += len(`,"geo":{"lat":,"long":}`) + 40
		}
		if !v.Datetime.IsZero() {
			n += len(`,"datetime":"2006-01-02T15:04:05.000Z"`)
		}
	}
	return n
}

// appendBatch appends {"values":[...]} for values to b. The index of a
// refused value in an error is counted from base.
func appendBatch(b []byte, values []Value, base int) ([]byte, error) {
	b = append(b, `{"values":[`...)
	for i := range values {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendItem(b, &values[i]); err != nil {
			return b, &valueError{index: base + i, key: values[i].Key, err: err}
		}
	}
	return append(b, "]}"...), nil
}

// checkItem reports what appendItem would refuse, without encoding the
// common value types.
func checkItem(v *Value) error {
	if err := validateKey(v.Key, true); err != nil {
		return err
	}
	switch x := v.Value.(type) {
	case nil, bool, string, int, int64, int32, int16, int8, uint, uint64, uint32, uint16, uint8:
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("thethings: value %v is not a number JSON can carry: %w", x, ErrInvalidValue)
		}
	default:
		var scratch [256]byte
		if _, err := appendJSON(scratch[:0], v.Value); err != nil {
			return err
		}
	}
	if v.Geo != nil {
		if err := v.Geo.validate(); err != nil {
			return err
		}
	}
	return checkDatetime(v.Datetime)
}

func checkDatetime(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	if s := t.Unix(); s < unixYear1 || s >= unixYear10000 {
		return fmt.Errorf("thethings: datetime %s outside the years 1..9999: %w", t.UTC().Format(time.RFC3339), ErrInvalidValue)
	}
	return nil
}

// appendItem validates v and appends its JSON object to b.
func appendItem(b []byte, v *Value) ([]byte, error) {
	if err := validateKey(v.Key, true); err != nil {
		return b, err
	}
	// A valid key needs no escaping.
	b = append(b, `{"key":"`...)
	b = append(b, v.Key...)
	b = append(b, `","value":`...)
	var err error
	if b, err = appendJSON(b, v.Value); err != nil {
		return b, err
	}
	if v.Geo != nil {
		if err := v.Geo.validate(); err != nil {
			return b, err
		}
		b = append(b, `,"geo":{"lat":`...)
		b = appendFloat(b, v.Geo.Lat, 64)
		b = append(b, `,"long":`...)
		b = appendFloat(b, v.Geo.Long, 64)
		b = append(b, '}')
	}
	if !v.Datetime.IsZero() {
		if err := checkDatetime(v.Datetime); err != nil {
			return b, err
		}
		b = append(b, `,"datetime":"`...)
		b = appendWireTime(b, v.Datetime)
		b = append(b, '"')
	}
	return append(b, '}'), nil
}

// appendJSON appends v as encoding/json would encode it (HTML characters
// escaped), with fast paths for the common types. NaN, infinities and
// values encoding/json refuses are errors matching ErrInvalidValue.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case string:
		return appendString(b, x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return b, fmt.Errorf("thethings: value %v is not a number JSON can carry: %w", x, ErrInvalidValue)
		}
		return appendFloat(b, x, 64), nil
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return b, fmt.Errorf("thethings: value %v is not a number JSON can carry: %w", x, ErrInvalidValue)
		}
		return appendFloat(b, float64(x), 32), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case json.Number:
		if x == "" {
			return append(b, '0'), nil
		}
		if !validNumber(string(x)) {
			return b, fmt.Errorf("thethings: json.Number %q is not a JSON number: %w", string(x), ErrInvalidValue)
		}
		return append(b, x...), nil
	case json.RawMessage:
		if len(x) == 0 {
			return append(b, "null"...), nil
		}
		if !json.Valid(x) {
			return b, fmt.Errorf("thethings: json.RawMessage is not valid JSON: %w", ErrInvalidValue)
		}
		return append(b, x...), nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return b, fmt.Errorf("thethings: value of type %T cannot be encoded as JSON: %s: %w", v, strings.TrimPrefix(err.Error(), "json: "), ErrInvalidValue)
	}
	return append(b, data...), nil
}

// appendFloat formats f exactly as encoding/json does: shortest
// representation, exponent form only for very small or large magnitudes.
func appendFloat(b []byte, f float64, bits int) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendString appends s as a JSON string. Printable ASCII without
// characters that need escaping is copied; anything else is escaped by
// encoding/json, so that the output is what encoding/json produces.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			data, _ := json.Marshal(s) // strings always encode
			return append(b, data...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// validNumber reports whether s is a JSON number.
func validNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}
