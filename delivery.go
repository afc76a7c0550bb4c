package thethings

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/thethings-go/thethings/internal/cursor"

	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

// delivery follows one batch from its first request until the platform is
// known to hold each value or refused it. Values with a Datetime are
// identified by (key, millisecond, value): an ambiguous outcome is resolved
// by reading the batch's keys back, never by guessing. A value that cannot
// be read back (see verifiable) is treated as one without a Datetime.
type delivery struct {
	c           *Client
	wc          writeConfig // the route is built per request: no field holds the token
	orig        []Value
	retryWrites bool

	body []byte // the encoded batch, for its first request (optional)

	send   []int  // indices in orig to send next
	gone   []bool // orig[i] is resolved: stored, or reported
	stored []bool // the last read back found orig[i] stored
	verify bool   // read back before sending again
	maybe  bool   // some request may have stored values not yet accounted for
	tries  int    // requests sent
	broken error  // the batch could not be read from the spool
	found  int    // dated values the last read back found stored

	unknown []int // unverifiable values of a batch read back at start, to report
}

// verifiable reports whether v can be found by reading back: it has a
// Datetime, its key keeps history (a magic key holds only current state),
// and a read window can end after it (not the last millisecond of 9999).
func verifiable(v *Value) bool {
	if v.Datetime.IsZero() || strings.HasPrefix(v.Key, "$") {
		return false
	}
	ms := v.Datetime.UnixMilli()
	return ms >= cursor.MinMillis && ms < cursor.MaxMillis
}

// stepResult is what one step of a delivery did.
type stepResult struct {
	done                   bool          // every value is resolved
	ok                     bool          // the platform answered a request with 2xx
	paused                 bool          // the thing was refused, or the answer is not the platform's
	err                    error         // the failure of this step, if any
	retryAfter             time.Duration // the platform's Retry-After, if any
	transient              bool          // err may pass: try again after a wait
	failed                 []*WriteError // values refused for good, or of unknown fate
	sent, verified, resent int
}

func (d *delivery) start(verify bool) {
	d.gone = make([]bool, len(d.orig))
	d.stored = make([]bool, len(d.orig))
	d.send = make([]int, len(d.orig))
	for i := range d.send {
		d.send[i] = i
	}
	if verify {
		d.verify, d.maybe = true, true
		d.send = nil
		// What cannot be read back may have been stored: like an
		// ambiguous answer, it is sent again blindly or reported.
		for i := range d.orig {
			if !verifiable(&d.orig[i]) {
				if d.retryWrites {
					d.send = append(d.send, i)
				} else {
					d.unknown = append(d.unknown, i)
					d.gone[i] = true
				}
			}
		}
	}
}

// unresolved returns the values not yet known stored or reported.
func (d *delivery) unresolved() []Value {
	var out []Value
	for i, g := range d.gone {
		if !g && !d.stored[i] {
			out = append(out, d.orig[i])
		}
	}
	return out
}

// giveUp ends a delivery that ran out of attempts: the values refused for
// good (failed), and the unresolved ones, whose fate is unknown while a
// read back is due.
func (d *delivery) giveUp(failed []error, cause error) error {
	if vals := d.unresolved(); len(vals) > 0 {
		failed = append(failed, &WriteError{Values: vals, Unknown: d.verify, Err: cause})
	}
	return joinErrors(failed)
}

// fromPlatform reports whether err is an answer in the platform's JSON
// envelope, not a proxy's page that happens to say the same words.
func fromPlatform(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status != ""
}

// pick returns the values of orig at idx.
func (d *delivery) pick(idx []int) []Value {
	out := make([]Value, len(idx))
	for j, i := range idx {
		out[j] = d.orig[i]
	}
	return out
}

// step does one request, or the reads of one verification, and says what
// came of it.
func (d *delivery) step(ctx context.Context) (r stepResult) {
	if len(d.unknown) > 0 {
		r.failed = append(r.failed, &WriteError{Values: d.pick(d.unknown), Unknown: true,
			Err: errorf("thethings: a request may have stored these values, which cannot be read back: %w", ErrOutcomeUnknown)})
		d.unknown = nil
	}
	if d.verify {
		missing, err := d.c.missing(ctx, d.orig, d.gone)
		if err != nil {
			r.err = err
			status, _ := answerOf(err)
			switch {
			case errors.Is(err, ErrPaginationStalled) || errors.Is(err, ErrInvalidOption) ||
				status != 0 && refusal(err) == transport.RefusesValues:
				// These values cannot be read back: their fate stays
				// unknown, and they must not hold up the values behind.
				r.done = true
				r.failed = append(r.failed, &WriteError{Values: d.unresolved(), Unknown: true, Err: err})
				d.resolveAll()
			case transport.Classify(transport.Idempotent, status, false, err) == transport.Permanent &&
				refusal(err) == transport.Pause:
				// The thing or the route is refused: keep the values.
				r.paused = true
			default:
				r.transient = true
			}
			return r
		}
		r.ok = true
		found := 0
		for i, g := range d.gone {
			if !g && verifiable(&d.orig[i]) {
				d.stored[i] = !slices.Contains(missing, i)
				if d.stored[i] {
					found++
				}
			}
		}
		r.verified = max(found-d.found, 0)
		d.found = found
		d.verify = false
		// Values that cannot be read back still waiting are blind re-sends.
		for _, i := range d.send {
			if !verifiable(&d.orig[i]) {
				missing = append(missing, i)
			}
		}
		slices.Sort(missing)
		d.send = missing
		if len(d.send) == 0 {
			d.maybe = false
			d.resolveAll()
			r.done = true
			return r
		}
	}
	vals := d.orig // d.send is sorted: as long as orig, it is all of it
	if len(d.send) != len(d.orig) {
		vals = d.pick(d.send)
	}
	body, bad := d.body, (*badValues)(nil)
	if body == nil || len(vals) != len(d.orig) {
		body, bad = encodeBatch(vals)
	}
	d.body = nil
	if bad != nil {
		// Changed after Add: they no longer encode.
		var keep []int
		for j, i := range d.send {
			if slices.Contains(bad.idx, j) {
				d.gone[i] = true
			} else {
				keep = append(keep, i)
			}
		}
		r.failed = append(r.failed, bad.report(vals))
		d.send = keep
		if body == nil {
			d.resolveAll()
			r.done = true
			return r
		}
	}
	kind := transport.Write
	for _, i := range d.send {
		if verifiable(&d.orig[i]) {
			kind = transport.Verified
			break
		}
	}
	resend := d.tries > 0
	d.tries++
	err := d.c.postValues(ctx, kind, d.c.writeRoute(d.wc), body)
	status, retryAfter := answerOf(err)
	oc := transport.Classify(kind, status, retryAfter > 0, err)
	r.err = err
	r.retryAfter = retryAfter
	n := len(d.send)
	if oc == transport.Permanent {
		switch refusal(err) {
		case transport.Passing:
			oc = transport.NotStored
		case transport.Pause:
			r.paused = true
			return r
		}
	}
	switch oc {
	case transport.Stored:
		r.ok = true
		if resend {
			r.resent = n
		} else {
			r.sent = n
		}
		// Whatever an earlier read back found is stored too.
		d.resolveAll()
		r.done = true
	case transport.NotStored:
		r.transient = true
	case transport.Ambiguous:
		r.transient = true
		d.maybe = true
		var dated, blind, unknown []int
		for _, i := range d.send {
			switch {
			case verifiable(&d.orig[i]):
				dated = append(dated, i)
			case d.retryWrites:
				blind = append(blind, i)
			default:
				unknown = append(unknown, i)
				d.gone[i] = true
			}
		}
		if len(unknown) > 0 {
			r.failed = append(r.failed, &WriteError{Values: d.pick(unknown), Unknown: true, Err: err})
		}
		d.send = blind
		d.verify = len(dated) > 0
		if !d.verify && len(blind) == 0 {
			d.resolveAll()
			r.done = true
		}
	case transport.Permanent:
		r.failed = append(r.failed, &WriteError{Values: d.pick(d.send), Err: err})
		d.send = nil
		d.resolveAll()
		r.done = true
	}
	return r
}

func (d *delivery) resolveAll() {
	for i := range d.gone {
		d.gone[i] = true
	}
}

// answerOf is the HTTP status and Retry-After of an *APIError in err, else
// zeros.
func answerOf(err error) (status int, retryAfter time.Duration) {
	if err == nil {
		return 0, 0 // before ae, which escapes: no allocation per success
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode, ae.RetryAfter
	}
	return 0, 0
}

// ident identifies a value with a Datetime on the platform.
type ident struct {
	key   string
	ms    int64
	value string // canonical JSON
}

// missing reads back the keys of the dated values of batch not marked gone,
// over the batch's time span, and returns the indices of those the platform
// does not hold, counting values as a multiset: of N identical values
// (same key, millisecond and value) of which M are found, N-M are missing.
// One read per key, plus one per further page of a key with more than 999
// values in the span.
func (c *Client) missing(ctx context.Context, batch []Value, gone []bool) ([]int, error) {
	type span struct{ lo, hi int64 }
	spans := map[string]*span{}
	var keys []string
	need := map[ident]int{}
	ids := make([]ident, len(batch))
	for i := range batch {
		v := &batch[i]
		if gone[i] || !verifiable(v) {
			continue
		}
		id, err := identOf(v.Key, v.Datetime, v.Value)
		if err != nil {
			return nil, err
		}
		ids[i] = id
		need[id]++
		s := spans[v.Key]
		if s == nil {
			s = &span{lo: id.ms, hi: id.ms}
			spans[v.Key] = s
			keys = append(keys, v.Key)
		}
		s.lo, s.hi = min(s.lo, id.ms), max(s.hi, id.ms)
	}
	missing := 0
	for _, n := range need {
		missing += n
	}
	for _, key := range keys {
		if missing == 0 {
			break // all found: no need to read on to the end of the window
		}
		s := spans[key]
		opts := &ReadOptions{Start: time.UnixMilli(s.lo), End: time.UnixMilli(s.hi + 1)}
		for v, err := range c.Values(ctx, key, opts) {
			if errors.Is(err, ErrResourceNotFound) && !errors.Is(err, ErrThingNotFound) && fromPlatform(err) {
				break // never written: nothing of it is stored
			}
			if err != nil {
				return nil, errorf("thethings: verify the values of key %q: %w", key, err)
			}
			id, err := identOf(key, v.Datetime, v.Value)
			if err != nil {
				continue // not one of ours
			}
			if need[id] > 0 {
				need[id]--
				if missing--; missing == 0 {
					break
				}
			}
		}
	}
	var out []int
	for i := len(batch) - 1; i >= 0; i-- {
		if gone[i] || !verifiable(&batch[i]) {
			continue
		}
		if need[ids[i]] > 0 {
			need[ids[i]]--
			out = append(out, i)
		}
	}
	slices.Reverse(out)
	return out, nil
}

// encodeBatch encodes batch. Values that no longer encode are left out and
// returned; body is nil when none is left.
func encodeBatch(batch []Value) ([]byte, *badValues) {
	body, err := appendBatch(nil, batch, 0, true)
	if err == nil {
		return body, nil
	}
	body = append(body[:0], `{"values":[`...)
	bad := &badValues{}
	n := 0
	for i := range batch {
		mark := len(body)
		if n > 0 {
			body = append(body, ',')
		}
		var ierr error
		v := &batch[i]
		if body, ierr = wire.AppendCheckedItem(body, v.Key, v.Value, (*wire.Geo)(v.Geo), v.Datetime); ierr != nil {
			body = body[:mark]
			if bad.err == nil {
				bad.err = &wire.ItemError{Index: i, Key: batch[i].Key, Err: ierr}
			}
			bad.idx = append(bad.idx, i)
			continue
		}
		n++
	}
	if n == 0 {
		return nil, bad
	}
	return append(body, "]}"...), bad
}

// badValues are values of a batch that no longer encode: they were changed
// after Add. Their error's index counts from the start of the batch.
type badValues struct {
	idx []int
	err error // the first one's
}

func (b *badValues) report(batch []Value) *WriteError {
	we := &WriteError{Err: b.err}
	for _, i := range b.idx {
		we.Values = append(we.Values, batch[i])
	}
	return we
}

// identOf is the identity of a value with a Datetime: its key, its
// millisecond and its value as canonical JSON (see wire.AppendCanonical).
func identOf(key string, t time.Time, v any) (ident, error) {
	canon, err := wire.AppendCanonical(nil, v)
	if err != nil {
		return ident{}, err
	}
	return ident{key: key, ms: t.UnixMilli(), value: string(canon)}, nil
}
