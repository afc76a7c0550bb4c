package thethingstest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/thethings-go/thethings/internal/filelock"
)

// The data directory (WithDataDir) holds one append-only file:
//
//	thethingstest.log  "TTFAKE1\n", then records: length u32, CRC-32C of
//	                   the payload u32 (little-endian), payload
//
// A payload is a record kind, one space and a JSON document (see
// replayers). Every change is appended before it is applied, and its
// answer waits until the file is fsync'd up to its record: concurrent
// changes share one fsync (group commit). On open the records are replayed
// in order; a record cut short or failing its CRC ends the log (a write
// torn by a crash, never acknowledged) and is truncated away.
const (
	logName       = "thethingstest.log"
	logMagic      = "TTFAKE1\n"
	logHeader     = 8
	maxRecordSize = 64 << 20 // far above what one request can write
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrDataDirInUse is returned by New when another Server (in this process
// or another) has the data directory open.
var ErrDataDirInUse = errors.New("thethingstest: the data directory is in use by another server")

// journal is the log of a data directory. append is called under
// Server.logMu, so records are in the order their changes were applied.
type journal struct {
	f      *os.File
	size   atomic.Int64 // bytes written
	syncMu sync.Mutex
	synced int64 // bytes known to be on disk; under syncMu

	errMu sync.Mutex
	err   error // the first write or sync failure; every later change fails
}

// openJournal opens (creating) the log in dir, calls replay for every
// record's payload in order and truncates a torn tail. replay must not keep
// the slice it is given.
func openJournal(dir string, replay func(payload []byte) error) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("thethingstest: data directory: %w", err)
	}
	path := filepath.Join(dir, logName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("thethingstest: data directory: %w", err)
	}
	// Where the system has no lock, two servers on one directory go
	// undetected.
	switch err := filelock.Lock(f); {
	case errors.Is(err, filelock.ErrLocked):
		f.Close()
		return nil, ErrDataDirInUse
	case err != nil && !errors.Is(err, errors.ErrUnsupported):
		f.Close()
		return nil, fmt.Errorf("thethingstest: data directory: %w", err)
	}
	j := &journal{f: f}
	if err := j.load(dir, replay); err != nil {
		f.Close()
		return nil, err
	}
	return j, nil
}

func (j *journal) load(dir string, replay func([]byte) error) error {
	fi, err := j.f.Stat()
	if err != nil {
		return fmt.Errorf("thethingstest: data directory: %w", err)
	}
	size := fi.Size()
	if size < int64(len(logMagic)) {
		// New, or torn before its header was on disk: start it.
		if err := j.f.Truncate(0); err != nil {
			return fmt.Errorf("thethingstest: data directory: %w", err)
		}
		if _, err := j.f.WriteAt([]byte(logMagic), 0); err != nil {
			return fmt.Errorf("thethingstest: data directory: %w", err)
		}
		if err := j.f.Sync(); err != nil {
			return fmt.Errorf("thethingstest: data directory: %w", err)
		}
		if err := syncDir(dir); err != nil {
			return err
		}
		j.size.Store(int64(len(logMagic)))
		_, err := j.f.Seek(int64(len(logMagic)), io.SeekStart)
		return err
	}
	r := bufio.NewReaderSize(j.f, 1<<20)
	magic := make([]byte, len(logMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != logMagic {
		return fmt.Errorf("thethingstest: %s is not a thethingstest data log", filepath.Join(dir, logName))
	}
	off := int64(len(logMagic))
	var hdr [logHeader]byte
	var payload []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break // end of log, or a torn header
		}
		n := int64(binary.LittleEndian.Uint32(hdr[0:]))
		if n > maxRecordSize || off+logHeader+n > size {
			break // torn: its length was written, not all its bytes
		}
		if int64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return fmt.Errorf("thethingstest: data log: %w", err)
		}
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
			break
		}
		if err := replay(payload); err != nil {
			return fmt.Errorf("thethingstest: data log record at byte %d: %w", off, err)
		}
		off += logHeader + n
	}
	if off < size {
		if err := j.f.Truncate(off); err != nil {
			return fmt.Errorf("thethingstest: data log: %w", err)
		}
		if err := j.f.Sync(); err != nil {
			return fmt.Errorf("thethingstest: data log: %w", err)
		}
	}
	j.size.Store(off)
	j.synced = off
	_, err = j.f.Seek(off, io.SeekStart)
	return err
}

// append writes one record and returns the log size after it; the caller
// holds Server.logMu.
func (j *journal) append(payload []byte) (int64, error) {
	if err := j.failure(); err != nil {
		return 0, err
	}
	if len(payload) > maxRecordSize {
		return 0, errors.New("thethingstest: data log: record too large")
	}
	buf := make([]byte, logHeader, logHeader+len(payload))
	binary.LittleEndian.PutUint32(buf[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[4:], crc32.Checksum(payload, castagnoli))
	if _, err := j.f.Write(append(buf, payload...)); err != nil {
		return 0, j.fail(err)
	}
	return j.size.Add(int64(len(buf) + len(payload))), nil
}

// sync returns once the log is on disk up to end. Callers waiting at the
// same time share one fsync.
func (j *journal) sync(end int64) error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	if err := j.failure(); err != nil {
		return err
	}
	if j.synced >= end {
		return nil
	}
	target := j.size.Load()
	if err := j.f.Sync(); err != nil {
		return j.fail(err)
	}
	j.synced = target
	return nil
}

func (j *journal) fail(err error) error {
	j.errMu.Lock()
	defer j.errMu.Unlock()
	if j.err == nil {
		j.err = fmt.Errorf("thethingstest: data log: %w", err)
	}
	return j.err
}

func (j *journal) failure() error {
	j.errMu.Lock()
	defer j.errMu.Unlock()
	return j.err
}

// close syncs and closes the log.
func (j *journal) close() error {
	err := j.sync(j.size.Load()) // closing f ends its lock
	if e := j.f.Close(); err == nil {
		err = e
	}
	return err
}

// syncDir makes the directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("thethingstest: data directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("thethingstest: data directory: %w", err)
	}
	return nil
}

// recordPayload is a record's payload: kind, one space, doc.
func recordPayload(kind string, doc []byte) []byte {
	return append(append(append(make([]byte, 0, len(kind)+1+len(doc)), kind...), ' '), doc...)
}

// splitPayload splits a payload into its kind and document.
func splitPayload(p []byte) (kind string, doc []byte) {
	k, d, _ := bytes.Cut(p, []byte{' '})
	return string(k), d
}
