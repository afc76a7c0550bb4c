// Package spool is the Writer's durable buffer: a directory holding a log
// of byte records, appended to and synced by many goroutines, read and
// acknowledged in order by one. Every state a crash or a power cut can
// leave opens without losing an acknowledged record; damage a crash cannot
// explain is ErrCorrupt naming the file.
//
// The directory holds:
//
//	LOCK         locked while a Log has the directory open
//	ACKED        how many records the reader acknowledged (see ack.go)
//	<seq>.seg    records from number seq on (see record.go); those wholly
//	             acknowledged are deleted, but the last
//
// Record numbers count records from the first ever appended.
package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/thethings-go/thethings/internal/fsys"
	"github.com/thethings-go/thethings/internal/wire"
)

const (
	lockName   = "LOCK"
	segSuffix  = ".seg"
	tmpSuffix  = ".tmp"
	maxSegment = 16 << 20

	osRDONLY = os.O_RDONLY
	osRDWR   = os.O_RDWR
	osCREATE = os.O_CREATE
	osEXCL   = os.O_EXCL
	osTRUNC  = os.O_TRUNC
)

// Errors. Messages start with "thethings:", as the SDK's do.
var (
	ErrCorrupt = errors.New("thethings: spool corrupt")
	ErrLocked  = errors.New("thethings: spool directory in use by another writer")
	ErrForeign = errors.New("thethings: spool holds another thing's values")
	// ErrNoLock: the system cannot lock the directory, so a second writer
	// could not be kept out.
	ErrNoLock = errors.New("thethings: spool directories cannot be locked on this system")
	// ErrUnsafeDir: others than the owner may write in the directory.
	ErrUnsafeDir = errors.New("thethings: spool directory writable by others")
	// ErrNotRegular: a name in the directory is a symlink, FIFO or device.
	ErrNotRegular = fsys.ErrNotRegular
)

func corrupt(name, format string, args ...any) error {
	return wire.Errorf("thethings: spool file %s: %s: %w", name, fmt.Sprintf(format, args...), ErrCorrupt)
}

func fileError(name string, err error) error {
	if errors.Is(err, ErrNotRegular) {
		return corrupt(name, "not a regular file")
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the name is said once
	}
	return wire.Errorf("thethings: spool file %s: %w", name, err)
}

// Options configure Open.
type Options struct {
	// Limit bounds the bytes of records appended and not acknowledged.
	Limit int64
	// Batch is the most records the reader acknowledges at once: it is
	// recorded, so that a Log opened after a crash knows how many records
	// may have been in flight.
	Batch int
	// Owner is recorded in a new spool; a spool of another owner is
	// ErrForeign.
	Owner Owner
	// FS is the file system; nil is OS.
	FS FS
}

type segment struct {
	first uint64 // number of its first record
	count uint64 // records in it (the last: as appended so far)
	name  string
}

func (s *segment) end() uint64 { return s.first + s.count }

// Log is an open spool.
type Log struct {
	fs    FS
	dir   string
	limit int64
	lock  File
	ack   *ackFile // written by the reader only, once open

	mu      sync.Mutex
	segs    []*segment // oldest first; the last is appended to
	tail    File       // the last segment, open for appending
	size    int64      // of the last segment
	next    uint64     // number of the next record appended
	durable uint64     // records before it are synced
	acked   uint64     // records acknowledged, as ACKED durably says
	written int64      // bytes appended by this Log: tickets for Sync
	synced  int64      // bytes of those known synced
	used    int64      // bytes of records not acknowledged
	room    chan struct{}
	err     error // a failed sync: nothing more is taken
	syncMu  sync.Mutex

	rd      cursor  // the reader's, used by Next and Ack only
	scanner *reader // Open's, one for every segment
}

// cursor is where the reader is.
type cursor struct {
	seq     uint64 // number of the next record to read
	seg     int    // index in segs of the segment it is in
	off     int64  // its offset there
	f       File   // open on segs[seg] once reading began
	r       *reader
	batches []int64 // bytes of each batch read and not yet acknowledged
}

// newSegment starts a new last segment at l.next, its header and name
// durable. l.mu is held or l is not shared yet.
func (l *Log) newSegment() error {
	name := filepath.Join(l.dir, fmt.Sprintf("%020d%s", l.next, segSuffix))
	f, err := l.fs.OpenFile(name, osRDWR|osCREATE|osEXCL, 0o600)
	if err != nil {
		return fileError(name, err)
	}
	_, err = f.WriteAt([]byte(segMagic), 0)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = l.fs.SyncDir(l.dir)
	}
	if err != nil {
		// A full disk, say: leave nothing half made.
		f.Close()
		_ = l.fs.Remove(name)
		return fileError(name, err)
	}
	if l.tail != nil {
		l.tail.Close()
	}
	l.segs = append(l.segs, &segment{first: l.next, name: name})
	l.tail, l.size = f, int64(len(segMagic))
	return nil
}

// Append writes the n records in recs (each framed by Frame) unless the
// spool has no room for them: then room is closed when it may have some.
// The records are durable once Sync(ticket) returned nil. A failed write
// takes nothing: the spool goes on once the cause (a full disk) is gone.
func (l *Log) Append(recs []byte, n int) (ticket int64, room <-chan struct{}, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return 0, nil, l.err
	}
	if l.used > 0 && l.used+int64(len(recs)) > l.limit {
		return 0, l.room, nil
	}
	if l.size+int64(len(recs)) > l.segMax() && l.size > int64(len(segMagic)) {
		// Make the full segment durable, then start the next one.
		if err := l.tail.Sync(); err != nil {
			l.err = fileError(l.segs[len(l.segs)-1].name, err)
			return 0, nil, l.err
		}
		l.synced, l.durable = l.written, l.next
		if err := l.newSegment(); err != nil {
			return 0, nil, err
		}
	}
	lastSeg := l.segs[len(l.segs)-1]
	if _, err := l.tail.WriteAt(recs, l.size); err != nil {
		if terr := l.tail.Truncate(l.size); terr != nil {
			l.err = fileError(lastSeg.name, terr)
		}
		return 0, nil, fileError(lastSeg.name, err)
	}
	l.size += int64(len(recs))
	l.written += int64(len(recs))
	l.next += uint64(n)
	lastSeg.count += uint64(n)
	l.used += int64(len(recs))
	return l.written, nil, nil
}

func (l *Log) segMax() int64 { return min(maxSegment, max(l.limit/8, 64<<10)) }

// Sync makes everything appended up to ticket durable. Concurrent callers
// share one fsync: whoever syncs covers every append made before it began.
func (l *Log) Sync(ticket int64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	if l.synced >= ticket {
		l.mu.Unlock()
		return nil // durable, whatever failed since
	}
	if l.err != nil {
		l.mu.Unlock()
		return l.err
	}
	f, name, target, seq := l.tail, l.segs[len(l.segs)-1].name, l.written, l.next
	l.mu.Unlock()
	err := f.Sync()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil && l.synced < target {
		// What the file holds is unknown now: take nothing more. A Log
		// opened again finds out.
		l.err = fileError(name, err)
		return l.err
	}
	if target > l.synced {
		l.synced, l.durable = target, seq
	}
	return nil
}

// Pending is the number of durable records not acknowledged.
func (l *Log) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int(l.durable - l.acked)
}

// InFlight is how many records to read back after opening: what the
// previous writer may have been sending. None when it recorded that no
// request of it could still be carried out (Busy is zero): it sent
// nothing, or closed with nothing in flight.
func (l *Log) InFlight() int {
	if l.Busy().IsZero() {
		return 0
	}
	return min(l.Pending(), l.ack.mark.batch)
}

// Limit is the bound on bytes of records not acknowledged.
func (l *Log) Limit() int64 { return l.limit }

// Busy is until when a request a previous Log's reader sent may still be
// carried out: the time recorded by Sending, zero if none.
func (l *Log) Busy() time.Time { return l.ack.mark.busy }

// SetBusy records, durably, until when a request the reader sent may
// still be carried out (zero: none can).
func (l *Log) SetBusy(until time.Time) error {
	if until.Equal(l.ack.mark.busy) {
		return nil
	}
	m := l.ack.mark
	m.busy = until
	return l.ack.write(m)
}

// Next returns up to k durable records after those already read, each a
// payload of its own. An error is ErrCorrupt naming the file: the records
// stay.
func (l *Log) Next(k int) ([][]byte, error) {
	l.mu.Lock()
	k = min(k, int(l.durable-l.rd.seq))
	l.mu.Unlock()
	out := make([][]byte, 0, k)
	var read int64
	for len(out) < k {
		l.mu.Lock()
		sg := l.segs[l.rd.seg]
		end := sg.end()
		l.mu.Unlock()
		if l.rd.seq >= end {
			l.rd.closeFile()
			l.rd.seg++
			l.rd.off = int64(len(segMagic))
			continue
		}
		if l.rd.f == nil {
			f, err := l.fs.OpenFile(sg.name, osRDONLY, 0)
			if err != nil {
				return nil, fileError(sg.name, err)
			}
			if _, err := f.Seek(l.rd.off, io.SeekStart); err != nil {
				f.Close()
				return nil, fileError(sg.name, err)
			}
			l.rd.f, l.rd.r = f, l.rd.r.reset(f, l.rd.off)
		}
		p, size, err := l.rd.r.next()
		if err != nil {
			var bad *badRecord
			if errors.As(err, &bad) {
				return nil, corrupt(sg.name, "%s", bad)
			}
			if err == io.EOF {
				return nil, corrupt(sg.name, "record at byte %d: missing", l.rd.off)
			}
			return nil, fileError(sg.name, err)
		}
		out = append(out, slices.Clone(p))
		l.rd.off += size
		read += size
		l.rd.seq++
	}
	l.rd.batches = append(l.rd.batches, read)
	return out, nil
}

func (c *cursor) closeFile() {
	if c.f != nil {
		c.f.Close()
		c.f = nil // c.r is kept for the next file
	}
}

// Ack records, durably, that the n records of the oldest batch read are
// done with, and deletes the segments wholly acknowledged.
func (l *Log) Ack(n int) error {
	var b int64
	if len(l.rd.batches) > 0 {
		b, l.rd.batches = l.rd.batches[0], l.rd.batches[1:]
	}
	m := l.ack.mark
	m.acked += uint64(n)
	if err := l.ack.write(m); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked = m.acked
	l.used -= b
	close(l.room)
	l.room = make(chan struct{})
	return l.compact()
}

// compact deletes the segments, but the last, whose records are all
// acknowledged. l.mu is held or l is not shared yet.
func (l *Log) compact() error {
	drop := 0
	for drop < len(l.segs)-1 && l.segs[drop].end() <= l.acked {
		drop++
	}
	for _, sg := range l.segs[:drop] {
		if err := l.fs.Remove(sg.name); err != nil {
			return fileError(sg.name, err)
		}
	}
	l.segs = slices.Delete(l.segs, 0, drop)
	if l.rd.seg -= drop; l.rd.seg < 0 {
		// The reader was at the end of a deleted segment.
		l.rd.closeFile()
		l.rd.seg, l.rd.off = 0, int64(len(segMagic))
	}
	return nil
}

// Close releases the spool's files and its lock.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	l.rd.closeFile()
	if l.tail != nil {
		errs = append(errs, l.tail.Close())
		l.tail = nil
	}
	if l.ack != nil {
		errs = append(errs, l.ack.close())
	}
	if l.lock != nil {
		errs = append(errs, l.lock.Close())
		l.lock = nil
	}
	if err := errors.Join(errs...); err != nil {
		return wire.Errorf("thethings: spool: %w", err)
	}
	return nil
}
