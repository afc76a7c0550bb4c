package thethings

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/thethings-go/thethings/internal/wire"
)

// Backfill: what a subscription delivers after a reconnect from history,
// and the bookkeeping that keeps a value from arriving twice (see
// WithBackfill).

// live turns a data frame into a Message, dropping values that a backfill
// delivered already.
func (s *subscriber) live(items []wire.Item, now time.Time) Message {
	values := make([]Value, 0, len(items))
	for i := range items {
		v := itemValue(&items[i])
		if s.keys[v.Key] {
			t, approx := v.Datetime, false
			if t.IsZero() {
				t, approx = now, true
			}
			fp := fingerprint(v)
			if s.seen.match(fp, t, approx, true) {
				continue
			}
			s.seen.add(fp, t, approx, false, s.pruneBefore())
		}
		values = append(values, v)
	}
	return Message{Values: values}
}

// pruneBefore is the oldest datetime a future backfill window may reach.
func (s *subscriber) pruneBefore() time.Time {
	t := s.lastFrame.Add(-2 * backfillSkew)
	if !s.gapFrom.IsZero() && s.gapFrom.Before(t) {
		t = s.gapFrom
	}
	return t
}

// backfill reads the backfill keys' history since gapFrom and delivers what
// was not delivered yet, oldest first.
func (s *subscriber) backfill(ctx context.Context) {
	from := s.gapFrom
	var all []Value
	var errs []error
	for _, key := range s.cfg.backfill {
		start := len(all)
		for v, err := range s.c.Values(ctx, key, &ReadOptions{Start: from}) {
			if err != nil {
				if !errors.Is(err, ErrResourceNotFound) {
					errs = append(errs, errorf("thethings: backfill of %q: %w", key, err))
				}
				break
			}
			if v.Key == "" {
				v.Key = key
			}
			all = append(all, v)
		}
		slices.Reverse(all[start:]) // history comes newest first
	}
	slices.SortStableFunc(all, func(a, b Value) int { return a.Datetime.Compare(b.Datetime) })

	// Deduplicate against what was delivered, then deliver one Message per
	// datetime.
	kept := all[:0]
	for _, v := range all {
		fp := fingerprint(v)
		if s.seen.match(fp, v.Datetime, false, false) {
			continue
		}
		kept = append(kept, v)
	}
	for _, v := range kept {
		s.seen.add(fingerprint(v), v.Datetime, false, true, from)
	}
	s.gapFrom = time.Time{}
	if len(errs) > 0 {
		s.state(StateConnected, errors.Join(errs...))
	}
	for len(kept) > 0 {
		n := 1
		for n < len(kept) && kept[n].Datetime.Equal(kept[0].Datetime) {
			n++
		}
		group := slices.Clone(kept[:n])
		kept = kept[n:]
		if !s.yield(Message{Values: group, Backfill: true}, nil) {
			s.stopped = true
			return
		}
	}
}

// fingerprint identifies a value by key and canonical JSON value (see
// wire.Fingerprint), so that a value decoded from the stream and the same
// value read from history compare equal.
func fingerprint(v Value) uint64 { return wire.Fingerprint(v.Key, v.Value) }

// seenSet remembers recently delivered values of the backfill keys by
// fingerprint and datetime, in the order they were delivered. It is
// bounded whatever the values' dates: entries older than any future
// backfill window are pruned as it grows, and so are entries delivered
// more than seenHorizon ago, and the oldest beyond seenMax.
type seenSet struct {
	es      []seenEntry
	compact int // prune when len(es) passes it
}

type seenEntry struct {
	fp       uint64
	ms       int64 // the value's datetime, Unix milliseconds
	at       int64 // when it was delivered, Unix nanoseconds (local clock)
	approx   bool  // ms is the local receipt time: the item had no datetime
	backfill bool  // delivered by a backfill
}

// match reports whether fp was delivered at t (within backfillSkew when
// either time is approximate). onlyBackfill restricts it to backfilled
// values.
func (ss *seenSet) match(fp uint64, t time.Time, approx, onlyBackfill bool) bool {
	ms := t.UnixMilli()
	skew := backfillSkew.Milliseconds()
	for i := range ss.es {
		e := &ss.es[i]
		if e.fp != fp || onlyBackfill && !e.backfill {
			continue
		}
		if approx || e.approx {
			if d := e.ms - ms; d <= skew && d >= -skew {
				return true
			}
		} else if e.ms == ms {
			return true
		}
	}
	return false
}

func (ss *seenSet) add(fp uint64, t time.Time, approx, backfill bool, pruneBefore time.Time) {
	now := time.Now().UnixNano()
	ss.es = append(ss.es, seenEntry{fp: fp, ms: t.UnixMilli(), at: now, approx: approx, backfill: backfill})
	if len(ss.es) <= max(ss.compact, 256) && len(ss.es) <= seenMax {
		return
	}
	before, horizon := pruneBefore.UnixMilli(), now-int64(seenHorizon)
	es := slices.DeleteFunc(ss.es, func(e seenEntry) bool { return e.ms < before || e.at < horizon })
	if n := len(es) - seenMax*3/4; n > 0 && len(es) > seenMax {
		es = es[:copy(es, es[n:])] // forget the oldest deliveries
	}
	if cap(es) > 2*max(len(es), 256) {
		es = slices.Clip(slices.Clone(es)) // give back a grown array
	}
	ss.es = es
	ss.compact = 2 * len(es)
}
