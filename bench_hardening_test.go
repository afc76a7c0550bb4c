package thethings

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/thethings-go/thethings/internal/wire"
)

// BenchmarkReadBounds: what the bounds on read answers cost. "unbounded"
// reads a 1000-value page as v0.1 did (bytes.Buffer.ReadFrom);
// "bounded" reads it through the size bound and the item count, which a
// usual page is too small to trigger; "count" is the item count itself
// over the same page, paid only by answers past 1 MiB.
func BenchmarkReadBounds(b *testing.B) {
	body := pageBody(1000)
	r := bytes.NewReader(body)
	var buf bytes.Buffer
	b.Run("unbounded", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			r.Reset(body)
			buf.Reset()
			if _, err := buf.ReadFrom(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bounded", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			r.Reset(body)
			buf.Reset()
			var count wire.Counter
			enough := func(p []byte) bool {
				if len(p) < pageCountFrom {
					return false
				}
				n, closed := count.Scan(p)
				return closed || n >= 1000
			}
			if _, err := readUntil(r, &buf, pageBodyLimit(1000), enough); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("count", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			var count wire.Counter
			if n, closed := count.Scan(body); n != 1000 || !closed {
				b.Fatal(n, closed)
			}
		}
	})
}

// BenchmarkBackfillBookkeeping: one live value of a backfill key, checked
// against and added to a full set of remembered values (seenMax of them,
// dated in the future so that no date prunes them).
func BenchmarkBackfillBookkeeping(b *testing.B) {
	s := &subscriber{keys: map[string]bool{"k": true}, lastFrame: time.Now()}
	future := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range seenMax {
		s.seen.add(uint64(i), future.Add(time.Duration(i)*time.Millisecond), false, false, time.Now())
	}
	v := Value{Key: "k", Value: 21.5, Datetime: future.Add(-time.Hour)}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		v.Datetime = v.Datetime.Add(time.Millisecond)
		fp := fingerprint(v)
		if s.seen.match(fp, v.Datetime, false, true) {
			b.Fatal("matched")
		}
		s.seen.add(fp, v.Datetime, false, false, s.pruneBefore())
	}
	b.ReportMetric(float64(len(s.seen.es)), "entries")
	_ = fmt.Sprint(i)
}
