package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path"
	"runtime"
	"testing"

	"github.com/thethings-go/thethings/internal/fsys/crashfs"
)

const fuzzDir = "/spool"

// fuzzRecords is what a correct reader finds in a segment's content: the
// payloads of the intact records after the header, up to the first that
// is not.
func fuzzRecords(seg []byte) [][]byte {
	if !bytes.HasPrefix(seg, []byte(segMagic)) {
		return nil
	}
	var out [][]byte
	for b := seg[len(segMagic):]; len(b) >= HeaderSize; {
		h := b[:HeaderSize]
		size := uint64(binary.LittleEndian.Uint32(h[0:4]))
		if crc32.Checksum(h[:8], castagnoli) != binary.LittleEndian.Uint32(h[8:12]) ||
			size == 0 || size > MaxRecord || uint64(len(b)-HeaderSize) < size {
			break
		}
		p := b[HeaderSize : HeaderSize+size]
		if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(h[4:8]) {
			break
		}
		out = append(out, p)
		b = b[HeaderSize+size:]
	}
	return out
}

// FuzzOpen opens a spool directory whose segment and ACKED files hold
// arbitrary bytes (each there or not, the segment alone or followed by an
// intact one; the ACKED made well-formed, acknowledging any number). Open either fails with ErrCorrupt or opens a Log from
// which every record not acknowledged reads back, intact and in order,
// exactly as they stand in the segment; such a spool opens again, holding
// the same. Whatever a length field says, Open allocates no more than a
// record's bound.
func FuzzOpen(f *testing.F) {
	// The seeds start from a spool of three records, one acknowledged,
	// made by Open and Append: its one segment and its ACKED.
	m := crashfs.New()
	l, err := Open(fuzzDir, Options{Limit: 1 << 20, Batch: 2, FS: m})
	if err != nil {
		f.Fatal(err)
	}
	var b []byte
	for _, p := range []string{`{"a":1}`, `{"b":"two"}`, `[3]`} {
		at := len(b)
		b = append(append(b, make([]byte, HeaderSize)...), p...)
		Frame(b, at)
	}
	ticket, _, err := l.Append(b, 3)
	if err == nil {
		err = l.Sync(ticket)
	}
	if err != nil {
		f.Fatal(err)
	}
	if _, err := l.Next(1); err != nil {
		f.Fatal(err)
	}
	if err := l.Ack(1); err != nil {
		f.Fatal(err)
	}
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	read := func(name string) []byte {
		data, _, ok := m.Content(path.Join(fuzzDir, name))
		if !ok {
			f.Fatalf("no %s", name)
		}
		return []byte(data)
	}
	seg, acked := read("00000000000000000000.seg"), read(ackName)
	f.Add(seg, acked, uint64(0), uint64(0), uint8(3))
	f.Add(seg, acked, uint64(0), uint64(0), uint8(1))                                           // no ACKED beside a segment
	f.Add(seg, acked, uint64(0), uint64(0), uint8(2))                                           // ACKED alone
	f.Add(seg[:len(seg)-2], acked, uint64(0), uint64(0), uint8(3))                              // last record cut short
	f.Add(seg[:5], acked, uint64(0), uint64(0), uint8(3))                                       // header cut short
	f.Add(append(bytes.Clone(seg), make([]byte, 40)...), acked, uint64(0), uint64(0), uint8(3)) // zeros a crash left
	f.Add(seg, acked, uint64(2), uint64(0), uint8(3))                                           // starts after the acknowledged
	f.Add(seg, acked[:32], uint64(0), uint64(0), uint8(3))                                      // torn ACKED
	bad := bytes.Clone(seg)
	bad[len(segMagic)+HeaderSize] ^= 0x40 // a flipped bit in the first payload
	f.Add(bad, acked, uint64(0), uint64(0), uint8(3))
	huge := bytes.Clone(seg[:len(segMagic)+HeaderSize])
	binary.LittleEndian.PutUint32(huge[len(segMagic):], 0xffff_fff0) // a length past any bound, with a good header checksum
	binary.LittleEndian.PutUint32(huge[len(segMagic)+8:], crc32.Checksum(huge[len(segMagic):len(segMagic)+8], castagnoli))
	f.Add(huge, acked, uint64(0), uint64(0), uint8(3))
	f.Add([]byte{}, []byte{}, uint64(0), uint64(0), uint8(3))
	f.Add(make([]byte, 8), make([]byte, 128), uint64(0), uint64(0), uint8(3))
	f.Add(seg, acked, uint64(0), uint64(0), uint8(7))              // an intact segment after it
	f.Add(seg[:len(seg)-2], acked, uint64(0), uint64(0), uint8(7)) // cut short, yet not the last
	f.Add([]byte(segMagic), acked, uint64(1), uint64(0), uint8(7)) // no records, not the last
	f.Add(seg, acked, uint64(0), uint64(3), uint8(15))             // all acknowledged, by a made ACKED
	f.Add(seg, acked, uint64(1<<64-2), uint64(1<<64-2), uint8(11)) // numbers that wrap
	f.Add([]byte{}, acked, uint64(0), uint64(1<<64-1), uint8(10))  // only an ACKED, at the end of numbers
	intact := seg

	f.Fuzz(func(t *testing.T, seg, ack []byte, first, ackN uint64, which uint8) {
		m := crashfs.New()
		if err := m.Mkdir(fuzzDir, 0o700); err != nil {
			t.Fatal(err)
		}
		// write makes b the whole content of name. With no record in the
		// segment, the intact one after it has the segment's own name: it
		// replaces the segment, leaving nothing of it behind.
		write := func(name string, b []byte) {
			w, err := m.OpenFile(path.Join(fuzzDir, name), osRDWR|osCREATE|osTRUNC, 0o600)
			if err == nil {
				_, err = w.WriteAt(b, 0)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		segName := fmt.Sprintf("%020d%s", first, segSuffix)
		if which&1 != 0 {
			write(segName, seg)
		}
		if which&8 != 0 { // a well-formed ACKED acknowledging ackN
			s := (&mark{gen: 1, acked: ackN, batch: 2}).encode()
			ack = append(make([]byte, ackSlot), s[:]...)
		}
		if which&2 != 0 {
			write(ackName, ack)
		}
		var recs [][]byte // the records of the segment, as a correct reader finds them
		if which&1 != 0 {
			recs = fuzzRecords(seg)
		}
		var later [][]byte // the records of an intact segment after it
		if which&4 != 0 {
			later = fuzzRecords(intact)
			write(fmt.Sprintf("%020d%s", uint64(first)+uint64(len(recs)), segSuffix), intact)
		}
		mk, _ := decodeMark(ack)
		o := Options{Limit: 1 << 20, Batch: 2, FS: m, Owner: mk.owner} // not ErrForeign

		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		l, err := Open(fuzzDir, o)
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > MaxRecord+1<<20+4*uint64(len(seg)+len(ack)) {
			t.Errorf("Open allocated %d bytes for %d bytes of files", grew, len(seg)+len(ack))
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
			return
		}
		got := fuzzReadAll(t, l)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}

		var want [][]byte
		for i, p := range append(recs, later...) {
			if uint64(first)+uint64(i) >= mk.acked {
				want = append(want, p)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("read %d records, the segments hold %d not acknowledged", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("record %d: %q, the segments hold %q", i, got[i], want[i])
			}
		}

		// What Open recovered is a spool: it opens again, holding the same.
		l, err = Open(fuzzDir, o)
		if err != nil {
			t.Fatalf("reopening what Open recovered: %v", err)
		}
		again := fuzzReadAll(t, l)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if len(again) != len(got) {
			t.Fatalf("reopened: %d records, first open: %d", len(again), len(got))
		}
		for i := range again {
			if !bytes.Equal(again[i], got[i]) {
				t.Fatalf("reopened: record %d is %q, was %q", i, again[i], got[i])
			}
		}
	})
}

// fuzzReadAll reads every pending record of l, in calls of at most two,
// each valid: not empty, within MaxRecord.
func fuzzReadAll(t *testing.T, l *Log) [][]byte {
	t.Helper()
	pending := l.Pending()
	var out [][]byte
	for calls := 0; ; calls++ {
		if calls > pending {
			t.Fatalf("%d calls of Next for %d pending records", calls, pending)
		}
		recs, err := l.Next(2)
		if err != nil {
			t.Fatalf("Next after a successful Open: %v", err)
		}
		if len(recs) == 0 {
			break
		}
		for _, p := range recs {
			if len(p) == 0 || len(p) > MaxRecord {
				t.Fatalf("record of %d bytes", len(p))
			}
		}
		out = append(out, recs...)
	}
	if len(out) != pending {
		t.Fatalf("read %d records, Pending said %d", len(out), pending)
	}
	return out
}
