package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// A segment file is "TTSPOOL1" then records: payload length u32, CRC-32C of
// the payload u32, CRC-32C of those 8 bytes u32, payload. Integers are
// little-endian. A payload is never empty and never holds a zero byte (the
// caller's encoding, JSON, has none): zeros in a record are bytes a crash
// lost (writes not synced reach the disk in any order, so a hole of zeros
// may come before records that did), anything else is damage.
const (
	segMagic = "TTSPOOL1"
	// HeaderSize is the size of a record's header, before its payload.
	HeaderSize = 12
	// MaxRecord is the largest payload a record holds.
	MaxRecord = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Frame fills in the header of the record at b[at:], whose payload is
// b[at+HeaderSize:].
func Frame(b []byte, at int) {
	p := b[at+HeaderSize:]
	h := b[at : at+HeaderSize]
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(p)))
	binary.LittleEndian.PutUint32(h[4:8], crc32.Checksum(p, castagnoli))
	binary.LittleEndian.PutUint32(h[8:12], crc32.Checksum(h[:8], castagnoli))
}

// badRecord is a record the reader could not read whole and intact.
type badRecord struct {
	off  int64
	why  string
	lost bool // the bytes look like a crash's loss: cut short, or zeros
}

func (e *badRecord) Error() string { return fmt.Sprintf("record at byte %d: %s", e.off, e.why) }

// reader is the one reader of segment records.
type reader struct {
	br      *bufio.Reader
	off     int64 // offset of the next record
	hdr     [HeaderSize]byte
	payload []byte
}

// reset makes r (nil: a new one) read f from offset off, where f is.
func (r *reader) reset(f io.Reader, off int64) *reader {
	if r == nil {
		return &reader{br: bufio.NewReaderSize(f, 64<<10), off: off}
	}
	r.br.Reset(f)
	r.off = off
	return r
}

// next returns the next record's payload, valid until the next call, and
// its size on disk; io.EOF at a clean end; a *badRecord for a record cut
// short or damaged; other errors from the file.
func (r *reader) next() ([]byte, int64, error) {
	hdr := r.hdr[:]
	_, err := io.ReadFull(r.br, hdr)
	switch {
	case err == io.EOF:
		return nil, 0, io.EOF
	case err == io.ErrUnexpectedEOF:
		return nil, 0, &badRecord{off: r.off, why: "header cut short", lost: true}
	case err != nil:
		return nil, 0, err
	}
	if crc32.Checksum(hdr[:8], castagnoli) != binary.LittleEndian.Uint32(hdr[8:12]) {
		return nil, 0, &badRecord{off: r.off, why: "bad header checksum", lost: zeroTail(hdr)}
	}
	size := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	if size == 0 || size > MaxRecord {
		// Checked before the length is trusted with an allocation.
		return nil, 0, &badRecord{off: r.off, why: fmt.Sprintf("length %d", size)}
	}
	r.payload = slices.Grow(r.payload[:0], int(size))[:size]
	if _, err := io.ReadFull(r.br, r.payload); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
			return nil, 0, &badRecord{off: r.off, why: "payload cut short", lost: true}
		}
		return nil, 0, err
	}
	if crc32.Checksum(r.payload, castagnoli) != binary.LittleEndian.Uint32(hdr[4:8]) {
		return nil, 0, &badRecord{off: r.off, why: "bad checksum", lost: slices.Contains(r.payload, 0)}
	}
	r.off += HeaderSize + size
	return r.payload, HeaderSize + size, nil
}

// zeroTail reports whether b ends in zeros from a point on, as a write a
// crash cut at a sector boundary leaves it; a flipped bit does not.
func zeroTail(b []byte) bool {
	i := len(b)
	for i > 0 && b[i-1] == 0 {
		i--
	}
	return i < len(b)-3 || i == 0
}

// restZero reports whether everything after what next read is zero bytes:
// space a file system gave the file but no write filled.
func (r *reader) restZero() (bool, error) {
	var buf [4096]byte
	for {
		n, err := r.br.Read(buf[:])
		if slices.ContainsFunc(buf[:n], func(b byte) bool { return b != 0 }) {
			return false, nil
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}
