// Package cursor encodes the resume point of a paginated read as an opaque,
// URL-safe string.
//
// A cursor says where a read stopped: every value newer than T has been
// delivered, and of the values stamped exactly T, those whose fingerprints
// are listed in Seen (a multiset). It also carries the read's window, the
// key it belongs to and whether the server was found to treat endDate as
// inclusive. The encoding is versioned and ends in a CRC-32C over the
// contents, so a truncated, altered or foreign string is refused; the check
// is not a security measure (a cursor holds nothing secret).
package cursor

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"slices"
	"strings"
)

// version is the first byte of every encoded cursor.
const version = 1

// MaxSeen bounds the fingerprints a cursor may carry; more would mean more
// values at one millisecond than any page can hold.
const MaxSeen = 4096

// maxKey bounds the key length accepted when decoding.
const maxKey = 1024

const (
	flagT = 1 << iota
	flagStart
	flagEnd
	flagInclusive
	flagsKnown = flagT | flagStart | flagEnd | flagInclusive
)

// ErrInvalid is returned by Decode for any string Encode did not make.
var ErrInvalid = errors.New("invalid cursor")

var table = crc32.MakeTable(crc32.Castagnoli)

// State is a read's resume point. Times are Unix milliseconds.
type State struct {
	Key       string
	HasT      bool
	T         int64 // everything newer than T has been delivered
	Inclusive bool  // the server treats endDate as inclusive
	HasStart  bool
	Start     int64 // window start, inclusive
	HasEnd    bool
	End       int64    // window end, exclusive
	Seen      []uint64 // fingerprints delivered at T, a multiset
}

// Encode returns s as an opaque base64url string.
func Encode(s State) string {
	b := make([]byte, 0, 32+len(s.Key)+8*len(s.Seen))
	b = append(b, version)
	var flags byte
	if s.HasT {
		flags |= flagT
	}
	if s.HasStart {
		flags |= flagStart
	}
	if s.HasEnd {
		flags |= flagEnd
	}
	if s.Inclusive {
		flags |= flagInclusive
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, s.T)
	b = binary.AppendVarint(b, s.Start)
	b = binary.AppendVarint(b, s.End)
	b = binary.AppendUvarint(b, uint64(len(s.Key)))
	b = append(b, s.Key...)
	seen := slices.Clone(s.Seen)
	slices.Sort(seen) // a multiset: order carries no information
	b = binary.AppendUvarint(b, uint64(len(seen)))
	for _, fp := range seen {
		b = binary.BigEndian.AppendUint64(b, fp)
	}
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, table))
	return base64.RawURLEncoding.EncodeToString(b)
}

// The instants a cursor may hold, in Unix milliseconds: the years 1..9999,
// the range of the platform's date formats.
const (
	MinMillis = -62135596800000 // 0001-01-01T00:00:00.000Z
	MaxMillis = 253402300799999 // 9999-12-31T23:59:59.999Z
)

func inRange(ms int64) bool { return ms >= MinMillis && ms <= MaxMillis }

// Decode parses a string made by Encode. Anything else is ErrInvalid; it
// never panics.
func Decode(str string) (State, error) {
	var s State
	// The decoder skips line breaks even in strict mode: a cursor is one
	// canonical string, so refuse them.
	if strings.ContainsAny(str, "\r\n") {
		return s, ErrInvalid
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(str)
	if err != nil || len(b) < 2+3+1+1+4 {
		return s, ErrInvalid
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, table) != sum || body[0] != version || body[1]&^flagsKnown != 0 {
		return s, ErrInvalid
	}
	flags := body[1]
	r := body[2:]
	next := func() (int64, bool) {
		v, n := binary.Varint(r)
		if n <= 0 {
			return 0, false
		}
		r = r[n:]
		return v, true
	}
	var ok1, ok2, ok3 bool
	s.T, ok1 = next()
	s.Start, ok2 = next()
	s.End, ok3 = next()
	if !ok1 || !ok2 || !ok3 {
		return State{}, ErrInvalid
	}
	klen, n := binary.Uvarint(r)
	if n <= 0 || klen > maxKey || uint64(len(r)-n) < klen {
		return State{}, ErrInvalid
	}
	r = r[n:]
	s.Key = string(r[:klen])
	r = r[klen:]
	count, n := binary.Uvarint(r)
	if n <= 0 || count > MaxSeen || uint64(len(r)-n) != 8*count {
		return State{}, ErrInvalid
	}
	r = r[n:]
	if count > 0 {
		s.Seen = make([]uint64, count)
		for i := range s.Seen {
			s.Seen[i] = binary.BigEndian.Uint64(r[8*i:])
		}
	}
	if !slices.IsSorted(s.Seen) {
		return State{}, ErrInvalid
	}
	s.HasT = flags&flagT != 0
	s.HasStart = flags&flagStart != 0
	s.HasEnd = flags&flagEnd != 0
	s.Inclusive = flags&flagInclusive != 0
	if !s.HasT && (s.T != 0 || len(s.Seen) != 0) || !s.HasStart && s.Start != 0 || !s.HasEnd && s.End != 0 {
		return State{}, ErrInvalid
	}
	if !inRange(s.T) || !inRange(s.Start) || !inRange(s.End) {
		return State{}, ErrInvalid
	}
	return s, nil
}
