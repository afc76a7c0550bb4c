package thethings

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"time"

	"github.com/thethings-go/thethings/internal/spool"
	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

// spoolBuffer is the Writer's buffer on disk: each value is one record of
// a spool.Log, its payload the value's JSON item.
type spoolBuffer struct {
	log     *spool.Log
	attempt time.Duration // the longest one request may take
	bound   time.Duration // the longest one delivery step may take
	settled bool          // no request of an earlier Writer can still be in flight
}

// openSpool opens the spool of cfg for c's thing.
func openSpool(c *Client, cfg writerConfig) (*spoolBuffer, error) {
	attempt := c.tr.AttemptTimeout()
	if attempt <= 0 {
		attempt = defaultTimeout
	}
	// A step gets time for an attempt, a wait and a second attempt; one
	// that needs more is cut and tried again by the Writer.
	b := &spoolBuffer{attempt: attempt, bound: 2*attempt + c.tr.Policy.MaxWait}
	var err error
	b.log, err = spool.Open(cfg.spoolDir, spool.Options{Limit: cfg.spoolLimit, Batch: cfg.batchSize, Owner: owner(c.token())})
	switch {
	case errors.Is(err, spool.ErrNoLock), errors.Is(err, spool.ErrUnsafeDir):
		return nil, errorf("%w: %w", err, ErrInvalidOption)
	case err != nil:
		return nil, err
	}
	// With nothing left to send, nothing of an earlier Writer can be in
	// flight that matters.
	b.settled = b.log.Pending() == 0
	return b, nil
}

// owner identifies a thing's spool by a hash of its token, which a spool
// never holds.
func owner(token string) spool.Owner {
	sum := sha256.Sum256([]byte("thethings spool owner\x00" + token))
	return spool.Owner(sum[:16])
}

func (b *spoolBuffer) prepare(values []Value, _ []Geo, stamps []time.Time) (taking, error) {
	recs, err := encodeRecords(values, stamps)
	if err != nil {
		return taking{}, err
	}
	if limit := b.log.Limit(); int64(len(recs)) > limit {
		return taking{}, errorf("thethings: %d bytes of values cannot fit in a spool of %d: %w", len(recs), limit, ErrInvalidValue)
	}
	return taking{n: len(values), recs: recs}, nil
}

func (b *spoolBuffer) put(t taking) (int64, <-chan struct{}, error) {
	return b.log.Append(t.recs, t.n)
}

func (b *spoolBuffer) commit(ticket int64) error {
	return b.log.Sync(ticket)
}

func (b *spoolBuffer) held() int { return b.log.Pending() }

// inFlight is the batch a previous Writer may have been sending. It first
// waits until no request that Writer sent can still be carried out, so
// that reading back finds what it stored: until the time it recorded, at
// most twice the step bound (the clock may have jumped).
func (b *spoolBuffer) inFlight(ctx context.Context) (int, error) {
	k := b.log.InFlight()
	if k == 0 {
		return 0, nil
	}
	if err := transport.Sleep(ctx, min(time.Until(b.log.Busy()), 2*b.bound)); err != nil {
		return 0, err
	}
	b.settled = true
	return k, nil
}

// sending records that a delivery step starts now; the step must end by
// the time returned. The record is written only when the one there ends
// in less than the step bound, for twice the bound: a steady flow of steps
// costs one sync per bound.
func (b *spoolBuffer) sending() (time.Time, error) {
	now := time.Now()
	if b.log.Busy().Before(now.Add(b.bound)) {
		if err := b.log.SetBusy(now.Add(2 * b.bound)); err != nil {
			return time.Time{}, err
		}
	}
	return b.log.Busy(), nil
}

func (b *spoolBuffer) next(k int) ([]Value, error) {
	recs, err := b.log.Next(k)
	if err != nil {
		return nil, err
	}
	out := make([]Value, len(recs))
	for i, p := range recs {
		if out[i], err = decodeRecord(p); err != nil {
			return nil, errorf("thethings: spool record: %v: %w", err, ErrSpoolCorrupt)
		}
	}
	return out, nil
}

func (b *spoolBuffer) done(n int) error {
	return b.log.Ack(n)
}

// close leaves the values in the spool for the next Writer, and tells it
// how long the request cut short (cur, if it may have stored values) may
// still be carried out.
func (b *spoolBuffer) close(cause error, cur *delivery) (errs []error, reported int) {
	var err error
	switch {
	case !b.settled:
		// An earlier Writer's request may still be in flight: its record stays.
	case cur != nil && cur.maybe:
		if until := time.Now().Add(b.attempt); until.Before(b.log.Busy()) {
			err = b.log.SetBusy(until)
		}
	default:
		err = b.log.SetBusy(time.Time{})
	}
	if err != nil {
		errs = append(errs, err)
	}
	if left := b.log.Pending(); left > 0 {
		errs = append(errs, errorf("thethings: writer closed with %s left in the spool, sent by the next writer on it: %w", countValues(left), cause))
	}
	if err := b.log.Close(); err != nil {
		errs = append(errs, err)
	}
	return errs, 0
}

// encodeRecords encodes values as spool records, with the Datetimes in
// stamps (nil: the values' own).
func encodeRecords(values []Value, stamps []time.Time) ([]byte, error) {
	b := make([]byte, 0, len(values)*(spool.HeaderSize+80))
	for i := range values {
		v := values[i]
		if stamps != nil {
			v.Datetime = stamps[i]
		}
		at := len(b)
		b = append(b, make([]byte, spool.HeaderSize)...)
		var err error
		if b, err = wire.AppendCheckedItem(b, v.Key, v.Value, (*wire.Geo)(v.Geo), v.Datetime); err != nil {
			return nil, &wire.ItemError{Index: i, Key: v.Key, Err: err}
		}
		if n := len(b) - at - spool.HeaderSize; n > spool.MaxRecord {
			return nil, &wire.ItemError{Index: i, Key: v.Key, Err: errorf("thethings: value of %d bytes too large for the spool: %w", n, ErrInvalidValue)}
		}
		spool.Frame(b, at)
	}
	return b, nil
}

// decodeRecord decodes one record's payload.
func decodeRecord(p []byte) (Value, error) {
	var it struct {
		Key      string          `json:"key"`
		Value    json.RawMessage `json:"value"`
		Geo      *Geo            `json:"geo"`
		Datetime string          `json:"datetime"`
	}
	if err := json.Unmarshal(p, &it); err != nil {
		return Value{}, err
	}
	v := Value{Key: it.Key, Value: it.Value, Geo: it.Geo}
	if it.Datetime == "" {
		return v, nil // waited for the platform's clock: see Writer.stamps
	}
	var err error
	v.Datetime, err = ParseTime(it.Datetime)
	return v, err
}
