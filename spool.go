package thethings

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/thethings-go/thethings/internal/wire"
)

// The spool is a directory of append-only segment files and one file
// recording how far the platform is known to hold them:
//
//	LOCK              flock'ed while a Writer has the directory open
//	ACKED             two 32-byte slots, written alternately: magic "TTA1",
//	                  generation u64, acknowledged count u64, batch size u32,
//	                  CRC-32C of the 24 bytes before it
//	<first seq>.seg   "TTSPOOL1", then records: length u32, CRC-32C of the
//	                  payload u32, CRC-32C of those 8 bytes u32, payload (one
//	                  value as its JSON item)
//
// All integers little-endian. Sequence numbers count values from the first
// ever written; a segment's name is the sequence number of its first record.
// Segments whose values are all acknowledged are deleted.
const (
	segMagic   = "TTSPOOL1"
	ackMagic   = "TTA1"
	ackName    = "ACKED"
	lockName   = "LOCK"
	segSuffix  = ".seg"
	recHeader  = 12
	maxRecord  = 1 << 20
	ackSlot    = 32
	maxSegment = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type segment struct {
	first uint64 // sequence number of its first record
	name  string // path
	count uint64 // records in it (the last segment: as last known)
	f     *os.File
}

// spool is the Writer's durable buffer. Writes (write, sync) come from Add
// under the Writer's lock; reads and acknowledgements (next, ack) come only
// from the Writer's goroutine.
type spool struct {
	dir    string
	limit  int64
	segMax int64
	lock   *os.File
	ackf   *os.File

	mu      sync.Mutex
	segs    []*segment // oldest first; the last is appended to
	wsize   int64      // size of the last segment
	written int64      // bytes of records ever written by this process
	wseq    uint64     // sequence number of the next record
	used    int64      // bytes of records not acknowledged
	room    chan struct{}
	err     error // sticky write or sync failure
	durSeq  uint64
	synced  int64
	syncMu  sync.Mutex
	ackSeq  uint64
	ackGen  uint64
	batch   int    // batch size recorded with the last acknowledgement
	rseq    uint64 // next record to read
	rseg    int    // index in segs of the segment being read
	roff    int64
	rf      *os.File
	rbuf    *bufio.Reader
	rcounts []int64 // bytes of each batch read and not yet acknowledged
}

func spoolError(name, format string, args ...any) error {
	return errorf("thethings: spool file %s: %s: %w", name, fmt.Sprintf(format, args...), ErrSpoolCorrupt)
}

// openSpool opens (creating if need be) the spool in dir, locks it, checks
// every file and drops a record torn by a crash at the end of the last
// segment. batch is the size of the batches the writer will send: it is
// recorded before any is sent, so that a writer opened after a crash knows
// how many values may have been in flight.
func openSpool(dir string, limit int64, batch int) (_ *spool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, errorf("thethings: spool: %w", err)
	}
	s := &spool{dir: dir, limit: limit, segMax: min(maxSegment, max(limit/8, 64<<10)), room: make(chan struct{})}
	s.lock, err = os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, errorf("thethings: spool: %w", err)
	}
	if err := lockFile(s.lock); err != nil {
		s.lock.Close()
		return nil, errorf("thethings: spool %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, errorf("thethings: spool: %w", err)
	}
	hasAck := false
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == ackName:
			hasAck = true
		case name == lockName:
		case strings.HasSuffix(name, segSuffix):
			first, perr := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
			if perr != nil || !e.Type().IsRegular() {
				return nil, spoolError(filepath.Join(dir, name), "not a spool segment")
			}
			s.segs = append(s.segs, &segment{first: first, name: filepath.Join(dir, name)})
		default:
			return nil, spoolError(filepath.Join(dir, name), "not a spool file")
		}
	}
	slices.SortFunc(s.segs, func(a, b *segment) int {
		return cmpUint(a.first, b.first)
	})
	if len(s.segs) > 0 && !hasAck {
		// Without it every value would be sent again: refuse to guess.
		return nil, spoolError(filepath.Join(dir, ackName), "missing beside %d segments", len(s.segs))
	}
	if err := s.readAck(); err != nil {
		return nil, err
	}
	for i, sg := range s.segs {
		if i > 0 && sg.first != s.segs[i-1].first+s.segs[i-1].count {
			return nil, spoolError(sg.name, "starts at value %d, the segment before ends at %d", sg.first, s.segs[i-1].first+s.segs[i-1].count)
		}
		if err := s.scan(sg, i == len(s.segs)-1); err != nil {
			return nil, err
		}
	}
	if len(s.segs) > 0 {
		first := s.segs[0].first
		end := s.segs[len(s.segs)-1].first + s.segs[len(s.segs)-1].count
		if s.ackSeq < first {
			// Segments are deleted only once acknowledged: one is lost.
			return nil, spoolError(s.segs[0].name, "starts at value %d, but values from %d are not acknowledged: a segment before it is missing", first, s.ackSeq)
		}
		if s.ackSeq > end {
			return nil, spoolError(filepath.Join(dir, ackName), "acknowledges %d values, the segments hold %d", s.ackSeq, end)
		}
		s.wseq = end
	} else {
		s.wseq = s.ackSeq
	}
	s.durSeq, s.rseq = s.wseq, s.ackSeq
	if err := s.compact(); err != nil {
		return nil, err
	}
	if len(s.segs) == 0 {
		if err := s.newSegment(); err != nil {
			return nil, err
		}
	} else {
		last := s.segs[len(s.segs)-1]
		if last.f, err = os.OpenFile(last.name, os.O_RDWR, 0); err != nil {
			return nil, errorf("thethings: spool: %w", err)
		}
		if s.wsize, err = last.f.Seek(0, io.SeekEnd); err != nil {
			return nil, errorf("thethings: spool: %w", err)
		}
	}
	// Position the reader on the first value not acknowledged and count
	// the bytes waiting.
	if err := s.seekRead(); err != nil {
		return nil, err
	}
	if batch > s.batch {
		// Keep the larger: the batch a previous writer may have had in
		// flight is read back whole.
		if err := s.writeAck(s.ackSeq, batch); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// readAck reads the acknowledgement file, creating it when missing.
func (s *spool) readAck() error {
	name := filepath.Join(s.dir, ackName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return errorf("thethings: spool: %w", err)
	}
	s.ackf = f
	buf := make([]byte, 2*ackSlot+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return errorf("thethings: spool: %w", err)
	}
	if n == 0 {
		if len(s.segs) > 0 {
			// Every value would be sent again: refuse to guess.
			return spoolError(name, "empty beside %d segments", len(s.segs))
		}
		return s.writeAck(0, 0) // a new spool
	}
	if n != 2*ackSlot {
		return spoolError(name, "size %d, want %d", n, 2*ackSlot)
	}
	found := false
	for i := 0; i < 2; i++ {
		slot := buf[i*ackSlot : (i+1)*ackSlot]
		if string(slot[:4]) != ackMagic || crc32.Checksum(slot[:24], castagnoli) != binary.LittleEndian.Uint32(slot[24:28]) {
			continue
		}
		gen := binary.LittleEndian.Uint64(slot[4:12])
		if !found || gen > s.ackGen {
			found = true
			s.ackGen = gen
			s.ackSeq = binary.LittleEndian.Uint64(slot[12:20])
			s.batch = int(binary.LittleEndian.Uint32(slot[20:24]))
		}
	}
	if !found {
		return spoolError(name, "no valid acknowledgement record")
	}
	return nil
}

// writeAck records that the first seq values are held by the platform,
// durably, in the slot the last record is not in.
func (s *spool) writeAck(seq uint64, batch int) error {
	gen := s.ackGen + 1
	var slot [ackSlot]byte
	copy(slot[:4], ackMagic)
	binary.LittleEndian.PutUint64(slot[4:12], gen)
	binary.LittleEndian.PutUint64(slot[12:20], seq)
	binary.LittleEndian.PutUint32(slot[20:24], uint32(batch))
	binary.LittleEndian.PutUint32(slot[24:28], crc32.Checksum(slot[:24], castagnoli))
	if gen == 1 {
		// A new file: both slots, so that its size is right from the start.
		var both [2 * ackSlot]byte
		copy(both[ackSlot:], slot[:])
		if _, err := s.ackf.WriteAt(both[:], 0); err != nil {
			return errorf("thethings: spool: %w", err)
		}
	} else if _, err := s.ackf.WriteAt(slot[:], int64(gen%2)*ackSlot); err != nil {
		return errorf("thethings: spool: %w", err)
	}
	if err := s.ackf.Sync(); err != nil {
		return errorf("thethings: spool: %w", err)
	}
	s.ackGen, s.ackSeq, s.batch = gen, seq, batch
	if gen == 1 {
		return syncDir(s.dir)
	}
	return nil
}

// scan checks a segment's records, counts them and, for the last segment,
// truncates a record torn by a crash at its end.
func (s *spool) scan(sg *segment, last bool) error {
	f, err := os.OpenFile(sg.name, os.O_RDWR, 0)
	if err != nil {
		return errorf("thethings: spool: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return errorf("thethings: spool: %w", err)
	}
	size := st.Size()
	r := bufio.NewReaderSize(f, 64<<10)
	var magic [len(segMagic)]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || string(magic[:]) != segMagic {
		if last && size < int64(len(segMagic)) && bytes.HasPrefix([]byte(segMagic), magic[:size]) {
			// Created by a crash before its header was whole.
			return truncate(f, sg.name, 0)
		}
		return spoolError(sg.name, "not a spool segment")
	}
	off := int64(len(segMagic))
	var hdr [recHeader]byte
	payload := make([]byte, 0, 256)
	for off < size {
		torn := func(format string, args ...any) error {
			if last {
				return truncate(f, sg.name, off)
			}
			return spoolError(sg.name, "record at byte %d: %s", off, fmt.Sprintf(format, args...))
		}
		if size-off < recHeader {
			return torn("cut short")
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return errorf("thethings: spool: %w", err)
		}
		if !headerSumOK(&hdr) {
			if last && allZero(r) {
				// Space the file system gave the file but no write filled.
				return truncate(f, sg.name, off)
			}
			return spoolError(sg.name, "record at byte %d: bad header checksum", off)
		}
		n, ok := recordLen(&hdr)
		if !ok {
			return spoolError(sg.name, "record at byte %d: length %d", off, n)
		}
		if off+recHeader+n > size {
			return torn("cut short")
		}
		payload = slices.Grow(payload[:0], int(n))[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return errorf("thethings: spool: %w", err)
		}
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(hdr[4:8]) {
			if off+recHeader+n == size {
				return torn("bad checksum")
			}
			return spoolError(sg.name, "record at byte %d: bad checksum", off)
		}
		off += recHeader + n
		sg.count++
	}
	return nil
}

// headerSumOK reports whether a record header's own checksum holds.
func headerSumOK(hdr *[recHeader]byte) bool {
	return crc32.Checksum(hdr[:8], castagnoli) == binary.LittleEndian.Uint32(hdr[8:12])
}

// recordLen is the payload length a record header gives, and whether it is
// one a spool writes (1..maxRecord).
func recordLen(hdr *[recHeader]byte) (int64, bool) {
	n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	return n, n > 0 && n <= maxRecord
}

// allZero reports whether the rest of r is zero bytes.
func allZero(r io.Reader) bool {
	var buf [4096]byte
	for {
		n, err := r.Read(buf[:])
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		if err != nil {
			return err == io.EOF
		}
	}
}

func truncate(f *os.File, name string, off int64) error {
	if err := f.Truncate(off); err != nil {
		return errorf("thethings: spool file %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return errorf("thethings: spool file %s: %w", name, err)
	}
	return nil
}

// seekRead places the reader at the first value not acknowledged and
// counts the bytes of the values waiting.
func (s *spool) seekRead() error {
	s.rseg, s.roff = -1, 0
	s.used = 0
	for i, sg := range s.segs {
		if sg.first+sg.count <= s.ackSeq && i < len(s.segs)-1 {
			continue
		}
		f, err := os.Open(sg.name)
		if err != nil {
			return errorf("thethings: spool: %w", err)
		}
		r := bufio.NewReaderSize(f, 64<<10)
		off := int64(len(segMagic))
		if _, err := r.Discard(len(segMagic)); err != nil {
			f.Close()
			return errorf("thethings: spool file %s: %w", sg.name, err)
		}
		var hdr [recHeader]byte
		for seq := sg.first; seq < sg.first+sg.count; seq++ {
			if seq == s.ackSeq && s.rseg < 0 {
				s.rseg, s.roff = i, off
			}
			if _, err := io.ReadFull(r, hdr[:]); err != nil {
				f.Close()
				return errorf("thethings: spool file %s: %w", sg.name, err)
			}
			n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
			if _, err := r.Discard(int(n)); err != nil {
				f.Close()
				return errorf("thethings: spool file %s: %w", sg.name, err)
			}
			off += recHeader + n
			if seq >= s.ackSeq {
				s.used += recHeader + n
			}
		}
		f.Close()
	}
	if s.rseg < 0 {
		// Everything is acknowledged: read from the end of the last segment.
		s.rseg, s.roff = len(s.segs)-1, s.wsize
	}
	return nil
}

// pending is the number of durable values not acknowledged.
func (s *spool) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.durSeq - s.ackSeq)
}

// inFlight is the size of the batch to read back on opening: what the
// previous writer may have been sending.
func (s *spool) inFlight(batch int) int {
	return min(s.pending(), max(batch, s.batch))
}

// newSegment starts a new last segment at wseq. s.mu is held or s is not
// shared yet.
func (s *spool) newSegment() error {
	name := filepath.Join(s.dir, fmt.Sprintf("%020d%s", s.wseq, segSuffix))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return errorf("thethings: spool: %w", err)
	}
	if _, err := f.Write([]byte(segMagic)); err != nil {
		f.Close()
		return errorf("thethings: spool: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return errorf("thethings: spool: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.segs = append(s.segs, &segment{first: s.wseq, name: name, f: f})
	s.wsize = int64(len(segMagic))
	return nil
}

// encodeRecords encodes values as spool records, with the Datetimes in
// stamps (nil: the values' own).
func encodeRecords(values []Value, stamps []time.Time) ([]byte, error) {
	b := make([]byte, 0, len(values)*(recHeader+80))
	for i := range values {
		v := values[i]
		if stamps != nil {
			v.Datetime = stamps[i]
		}
		at := len(b)
		b = append(b, make([]byte, recHeader)...)
		var err error
		if b, err = wire.AppendCheckedItem(b, v.Key, v.Value, (*wire.Geo)(v.Geo), v.Datetime); err != nil {
			return nil, &wire.ItemError{Index: i, Key: v.Key, Err: err}
		}
		p := b[at+recHeader:]
		if len(p) > maxRecord {
			return nil, &wire.ItemError{Index: i, Key: v.Key, Err: errorf("thethings: value of %d bytes too large for the spool: %w", len(p), ErrInvalidValue)}
		}
		h := b[at : at+recHeader]
		binary.LittleEndian.PutUint32(h[0:4], uint32(len(p)))
		binary.LittleEndian.PutUint32(h[4:8], crc32.Checksum(p, castagnoli))
		binary.LittleEndian.PutUint32(h[8:12], crc32.Checksum(h[:8], castagnoli))
	}
	return b, nil
}

// write appends the n records in recs, unless the spool has no room: then
// it returns a channel closed when room may have appeared. ticket is for
// sync.
func (s *spool) write(recs []byte, n int) (ticket int64, room <-chan struct{}, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, nil, s.err
	}
	if s.used > 0 && s.used+int64(len(recs)) > s.limit {
		return 0, s.room, nil
	}
	if s.wsize+int64(len(recs)) > s.segMax && s.wsize > int64(len(segMagic)) {
		// Make the full segment durable, then start the next one.
		last := s.segs[len(s.segs)-1]
		if err := last.f.Sync(); err != nil {
			s.err = errorf("thethings: spool: %w", err)
			return 0, nil, s.err
		}
		s.synced, s.durSeq = s.written, s.wseq
		if err := s.newSegment(); err != nil {
			s.err = err
			return 0, nil, err
		}
	}
	last := s.segs[len(s.segs)-1]
	if _, err := last.f.Write(recs); err != nil {
		s.err = errorf("thethings: spool: %w", err)
		return 0, nil, s.err
	}
	s.wsize += int64(len(recs))
	s.written += int64(len(recs))
	s.wseq += uint64(n)
	last.count += uint64(n)
	s.used += int64(len(recs))
	return s.written, nil, nil
}

// sync makes everything written up to ticket durable. Concurrent callers
// share one fsync: whoever syncs covers every write made before it began.
func (s *spool) sync(ticket int64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	if s.synced >= ticket || s.err != nil {
		err := s.err
		if s.synced >= ticket {
			err = nil // durable, whatever failed since
		}
		s.mu.Unlock()
		return err
	}
	f, target, seq := s.segs[len(s.segs)-1].f, s.written, s.wseq
	s.mu.Unlock()
	err := f.Sync()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil && s.synced >= target {
		// Meanwhile a new segment was started, which synced this one, and
		// its values, acknowledged, let compaction close the file: they are
		// durable.
		err = nil
	}
	if err != nil {
		s.err = errorf("thethings: spool: %w", err)
		return s.err
	}
	if target > s.synced {
		s.synced, s.durSeq = target, seq
	}
	return nil
}

// next reads up to k durable values after those already read. A failure
// is sticky: the spool takes and gives nothing more.
func (s *spool) next(k int) (_ []Value, err error) {
	defer func() {
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
		}
	}()
	s.mu.Lock()
	avail := int(s.durSeq - s.rseq)
	s.mu.Unlock()
	k = min(k, avail)
	out := make([]Value, 0, k)
	var hdr [recHeader]byte
	var bytesRead int64
	for len(out) < k {
		s.mu.Lock()
		sg := s.segs[s.rseg]
		segEnd := sg.first + sg.count
		s.mu.Unlock()
		if s.rseq >= segEnd {
			if s.rf != nil {
				s.rf.Close()
				s.rf = nil
			}
			s.rseg++
			s.roff = int64(len(segMagic))
			continue
		}
		if s.rf == nil {
			f, err := os.Open(sg.name)
			if err != nil {
				return nil, errorf("thethings: spool: %w", err)
			}
			if _, err := f.Seek(s.roff, io.SeekStart); err != nil {
				f.Close()
				return nil, errorf("thethings: spool: %w", err)
			}
			s.rf, s.rbuf = f, bufio.NewReaderSize(f, 64<<10)
		}
		if _, err := io.ReadFull(s.rbuf, hdr[:]); err != nil {
			return nil, spoolError(sg.name, "read at byte %d: %v", s.roff, err)
		}
		n, ok := recordLen(&hdr)
		if !headerSumOK(&hdr) || !ok {
			// Damaged since it was opened: checked before the length is
			// trusted with an allocation.
			return nil, spoolError(sg.name, "record at byte %d: bad header", s.roff)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(s.rbuf, p); err != nil {
			return nil, spoolError(sg.name, "read at byte %d: %v", s.roff, err)
		}
		if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(hdr[4:8]) {
			return nil, spoolError(sg.name, "record at byte %d: bad checksum", s.roff)
		}
		v, err := decodeRecord(p)
		if err != nil {
			return nil, spoolError(sg.name, "record at byte %d: %v", s.roff, err)
		}
		out = append(out, v)
		s.roff += int64(recHeader + n)
		bytesRead += int64(recHeader + n)
		s.rseq++
	}
	s.rcounts = append(s.rcounts, bytesRead)
	return out, nil
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
	t, err := ParseTime(it.Datetime)
	if err != nil {
		return Value{}, err
	}
	return Value{Key: it.Key, Value: it.Value, Geo: it.Geo, Datetime: t}, nil
}

// ack records that the n values of the oldest batch read are held by the
// platform, and deletes the segments that are wholly acknowledged.
func (s *spool) ack(n, batch int) error {
	var b int64
	if len(s.rcounts) > 0 {
		b, s.rcounts = s.rcounts[0], s.rcounts[1:]
	}
	if err := s.writeAck(s.ackSeq+uint64(n), batch); err != nil {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	s.used -= b
	close(s.room)
	s.room = make(chan struct{})
	err := s.compact()
	s.mu.Unlock()
	return err
}

// compact deletes the segments, but the last, whose values are all
// acknowledged. s.mu is held or s is not shared yet.
func (s *spool) compact() error {
	drop := 0
	for drop < len(s.segs)-1 && s.segs[drop].first+s.segs[drop].count <= s.ackSeq {
		drop++
	}
	if drop == 0 {
		return nil
	}
	for _, sg := range s.segs[:drop] {
		if sg.f != nil {
			sg.f.Close()
		}
		if err := os.Remove(sg.name); err != nil {
			return errorf("thethings: spool: %w", err)
		}
	}
	s.segs = slices.Delete(s.segs, 0, drop)
	if s.rseg -= drop; s.rseg < 0 {
		// The reader was at the end of a deleted segment.
		if s.rf != nil {
			s.rf.Close()
			s.rf = nil
		}
		s.rseg, s.roff = 0, int64(len(segMagic))
	}
	return nil
}

// close releases the spool's files and its lock.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, sg := range s.segs {
		if sg.f != nil {
			errs = append(errs, sg.f.Close())
			sg.f = nil
		}
	}
	if s.rf != nil {
		s.rf.Close()
		s.rf = nil
	}
	if s.ackf != nil {
		errs = append(errs, s.ackf.Close())
		s.ackf = nil
	}
	if s.lock != nil {
		unlockFile(s.lock)
		errs = append(errs, s.lock.Close())
		s.lock = nil
	}
	if err := errors.Join(errs...); err != nil {
		return errorf("thethings: spool: %w", err)
	}
	return nil
}

// syncDir makes the directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return errorf("thethings: spool: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return errorf("thethings: spool: %w", err)
	}
	return nil
}
