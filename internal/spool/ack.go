package spool

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"path/filepath"
	"time"
)

// ACKED holds two 64-byte slots written alternately, so that a write torn
// by a crash leaves the other intact: magic "TTA2", generation u64,
// acknowledged count u64, batch size u32, busy-until (Unix ms) i64, owner
// [16]byte, 12 zero bytes, CRC-32C of the 60 bytes before it. The slot with
// the higher generation and a good checksum holds. v0.2 wrote 32-byte
// "TTA1" slots (no busy-until, no owner); they are read, then replaced.
const (
	ackName    = "ACKED"
	ackMagic   = "TTA2"
	ackSlot    = 64
	oldMagic   = "TTA1"
	oldAckSlot = 32
)

// mark is what ACKED records.
type mark struct {
	gen   uint64
	acked uint64    // values the platform is known to hold, from the first
	batch int       // the largest batch a writer may have had in flight
	busy  time.Time // until then, a request sent may still be stored
	owner Owner     // whose values these are; zero: not recorded yet
}

// Owner identifies whose values a spool holds, without naming them (a hash
// of a secret, say).
type Owner [16]byte

func (m *mark) encode() [ackSlot]byte {
	var s [ackSlot]byte
	copy(s[:4], ackMagic)
	binary.LittleEndian.PutUint64(s[4:12], m.gen)
	binary.LittleEndian.PutUint64(s[12:20], m.acked)
	binary.LittleEndian.PutUint32(s[20:24], uint32(m.batch))
	if !m.busy.IsZero() {
		binary.LittleEndian.PutUint64(s[24:32], uint64(m.busy.UnixMilli()))
	}
	copy(s[32:48], m.owner[:])
	binary.LittleEndian.PutUint32(s[60:64], crc32.Checksum(s[:60], castagnoli))
	return s
}

// decodeMark reads the newest good slot of an ACKED file's content.
func decodeMark(b []byte) (mark, bool) {
	var m mark
	found := false
	take := func(c mark) {
		if !found || c.gen > m.gen {
			m, found = c, true
		}
	}
	switch len(b) {
	case 2 * ackSlot:
		for s := range slots(b, ackSlot) {
			if string(s[:4]) != ackMagic || crc32.Checksum(s[:60], castagnoli) != binary.LittleEndian.Uint32(s[60:64]) {
				continue
			}
			c := mark{gen: binary.LittleEndian.Uint64(s[4:12]), acked: binary.LittleEndian.Uint64(s[12:20]), batch: int(binary.LittleEndian.Uint32(s[20:24]))}
			if ms := int64(binary.LittleEndian.Uint64(s[24:32])); ms != 0 {
				c.busy = time.UnixMilli(ms)
			}
			copy(c.owner[:], s[32:48])
			take(c)
		}
	case 2 * oldAckSlot:
		for s := range slots(b, oldAckSlot) {
			if string(s[:4]) != oldMagic || crc32.Checksum(s[:24], castagnoli) != binary.LittleEndian.Uint32(s[24:28]) {
				continue
			}
			take(mark{gen: binary.LittleEndian.Uint64(s[4:12]), acked: binary.LittleEndian.Uint64(s[12:20]), batch: int(binary.LittleEndian.Uint32(s[20:24]))})
		}
	}
	return m, found
}

func slots(b []byte, size int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for i := 0; i+size <= len(b); i += size {
			if !yield(b[i : i+size]) {
				return
			}
		}
	}
}

// ackFile is the open ACKED file and the mark it durably holds.
type ackFile struct {
	fs   FS
	dir  string
	f    File
	mark mark
}

// openAck reads ACKED, or creates it (whole, under a temporary name, then
// renamed) for a new spool. It syncs the file before trusting it: a slot
// a crashed process wrote but never synced is made durable before anything
// is done on its word. segs is the number of segments beside it.
func openAck(fsys FS, dir string, segs int) (*ackFile, error) {
	name := filepath.Join(dir, ackName)
	a := &ackFile{fs: fsys, dir: dir}
	f, err := fsys.OpenFile(name, osRDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if segs > 0 {
			// Every value would be sent again: refuse to guess.
			return nil, corrupt(name, "missing beside %d segments", segs)
		}
		return a, a.replace(mark{gen: 1})
	}
	if err != nil {
		return nil, fileError(name, err)
	}
	a.f = f
	if err := f.Sync(); err != nil {
		return nil, fileError(name, err)
	}
	b := make([]byte, 2*ackSlot+1)
	n, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fileError(name, err)
	}
	if n == 0 && segs == 0 {
		return a, a.replace(mark{gen: 1}) // a v0.2 spool created by a crash
	}
	m, ok := decodeMark(b[:n])
	if !ok {
		return nil, corrupt(name, "no valid acknowledgement record in %d bytes", n)
	}
	a.mark = m
	if n != 2*ackSlot {
		// The v0.2 format records no busy-until: its writer may have been
		// sending, so the first batch is read back, as v0.2 did.
		m.busy = time.UnixMilli(1)
		return a, a.replace(m)
	}
	return a, nil
}

// write records m durably, in the slot the current mark is not in.
func (a *ackFile) write(m mark) error {
	m.gen = a.mark.gen + 1
	s := m.encode()
	name := filepath.Join(a.dir, ackName)
	if _, err := a.f.WriteAt(s[:], int64(m.gen%2)*ackSlot); err != nil {
		return fileError(name, err)
	}
	if err := a.f.Sync(); err != nil {
		return fileError(name, err)
	}
	a.mark = m
	return nil
}

// replace writes a whole new ACKED holding m: under a temporary name,
// synced, renamed over the old one, and the rename synced.
func (a *ackFile) replace(m mark) error {
	tmp := filepath.Join(a.dir, ackName+tmpSuffix)
	name := filepath.Join(a.dir, ackName)
	f, err := a.fs.OpenFile(tmp, osRDWR|osCREATE|osTRUNC, 0o600)
	if err != nil {
		return fileError(tmp, err)
	}
	var both [2 * ackSlot]byte
	s := m.encode()
	copy(both[int(m.gen%2)*ackSlot:], s[:])
	_, err = f.WriteAt(both[:], 0)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = a.fs.Rename(tmp, name)
	}
	if err == nil {
		err = a.fs.SyncDir(a.dir)
	}
	if err != nil {
		f.Close()
		return fileError(name, err)
	}
	if a.f != nil {
		a.f.Close()
	}
	a.f, a.mark = f, m
	return nil
}

func (a *ackFile) close() error {
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}
