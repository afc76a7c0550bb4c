package spool

import (
	"cmp"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/thethings-go/thethings/internal/fsys"
	"github.com/thethings-go/thethings/internal/wire"
)

// Open opens the spool in dir, creating it (mode 0700, with every parent
// it makes, all synced) if need be, locks it, recovers what a crash left,
// and makes durable everything it trusts before returning.
func Open(dir string, o Options) (_ *Log, err error) {
	l := &Log{fs: o.FS, dir: dir, limit: o.Limit, room: make(chan struct{})}
	if l.fs == nil {
		l.fs = OS
	}
	if err := mkdirAll(l.fs, dir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	lockPath := filepath.Join(dir, lockName)
	if l.lock, err = l.fs.OpenFile(lockPath, osRDWR|osCREATE, 0o600); err != nil {
		return nil, fileError(lockPath, err)
	}
	switch err := l.fs.Lock(l.lock); {
	case errors.Is(err, fsys.ErrLocked):
		return nil, wire.Errorf("thethings: spool %s: %w", dir, ErrLocked)
	case errors.Is(err, errors.ErrUnsupported):
		return nil, wire.Errorf("thethings: spool %s: %w", dir, ErrNoLock)
	case err != nil:
		return nil, fileError(lockPath, err)
	}
	if err := l.list(); err != nil {
		return nil, err
	}
	if l.ack, err = openAck(l.fs, dir, len(l.segs)); err != nil {
		return nil, err
	}
	m := l.ack.mark
	switch {
	case m.owner == Owner{}:
		m.owner = o.Owner
	case m.owner != o.Owner:
		return nil, wire.Errorf("thethings: spool %s: %w", dir, ErrForeign)
	}
	if err := l.recover(); err != nil {
		return nil, err
	}
	if m != l.ack.mark || o.Batch > m.batch {
		// Keep the larger batch: the one a previous writer may have had in
		// flight is read back whole.
		m.batch = max(m.batch, o.Batch)
		if err := l.ack.write(m); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// mkdirAll makes dir and its missing parents, syncing each parent that
// got a new entry, and checks that only its owner may write in it.
func mkdirAll(files FS, dir string) error {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		st, err := files.Stat(d)
		if err == nil {
			if !st.IsDir() {
				return wire.Errorf("thethings: spool %s: %s is not a directory", dir, d)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || d == filepath.Dir(d) {
			return wire.Errorf("thethings: spool: %w", err)
		}
		missing = append(missing, d)
	}
	for _, d := range slices.Backward(missing) {
		if err := files.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return wire.Errorf("thethings: spool: %w", err)
		}
		if err := files.SyncDir(filepath.Dir(d)); err != nil {
			return wire.Errorf("thethings: spool: sync %s: %w", filepath.Dir(d), err)
		}
	}
	st, err := files.Stat(dir)
	if err != nil {
		return wire.Errorf("thethings: spool: %w", err)
	}
	if fsys.PermBits && st.Mode().Perm()&0o022 != 0 {
		return wire.Errorf("thethings: spool %s: mode %04o: %w", dir, st.Mode().Perm(), ErrUnsafeDir)
	}
	return nil
}

// list reads the directory's names: segments, in order, and nothing the
// spool did not make.
func (l *Log) list() error {
	entries, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return wire.Errorf("thethings: spool: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(l.dir, name)
		if !e.Type().IsRegular() {
			return corrupt(path, "not a regular file")
		}
		switch {
		case name == ackName || name == lockName:
		case name == ackName+tmpSuffix:
			// A new ACKED a crash kept from being renamed into place.
			if err := l.fs.Remove(path); err != nil {
				return fileError(path, err)
			}
		case strings.HasSuffix(name, segSuffix):
			first, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
			if err != nil {
				return corrupt(path, "not a spool segment")
			}
			l.segs = append(l.segs, &segment{first: first, name: path})
		default:
			return corrupt(path, "not a spool file")
		}
	}
	slices.SortFunc(l.segs, func(a, b *segment) int { return cmp.Compare(a.first, b.first) })
	return nil
}

// recover checks every segment, counts its records, drops what a crash
// left at the end of the last one, syncs what it keeps and places the
// reader on the first record not acknowledged.
func (l *Log) recover() error {
	acked := l.ack.mark.acked
	l.acked = acked
	if len(l.segs) > 0 && acked < l.segs[0].first {
		// Segments are deleted only once acknowledged: one is lost.
		return corrupt(l.segs[0].name, "starts at record %d, but records from %d are not acknowledged: a segment before it is missing", l.segs[0].first, acked)
	}
	end := acked // with no segment, nothing past what was acknowledged
	l.rd.seg = -1
	for i := 0; i < len(l.segs); i++ {
		sg, last := l.segs[i], i == len(l.segs)-1
		if i > 0 && sg.first != end {
			return corrupt(sg.name, "starts at record %d, the segment before ends at %d", sg.first, end)
		}
		keep, err := l.scan(i, last, acked)
		if err != nil {
			return err
		}
		end = sg.end()
		if !keep {
			l.segs = l.segs[:i]
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return wire.Errorf("thethings: spool: sync %s: %w", l.dir, err)
	}
	if acked > end {
		return corrupt(filepath.Join(l.dir, ackName), "acknowledges %d records, the segments hold %d", acked, end)
	}
	l.next = end
	l.durable = l.next
	l.rd.seq = acked
	if err := l.compact(); err != nil {
		return err
	}
	if len(l.segs) == 0 {
		return l.newSegment()
	}
	lastSeg := l.segs[len(l.segs)-1]
	f, err := l.fs.OpenFile(lastSeg.name, osRDWR, 0)
	if err != nil {
		return fileError(lastSeg.name, err)
	}
	l.tail = f
	if l.size, err = f.Seek(0, io.SeekEnd); err != nil {
		return fileError(lastSeg.name, err)
	}
	if l.rd.seg < 0 {
		// Everything is acknowledged: read from the end.
		l.rd.seg, l.rd.off = len(l.segs)-1, l.size
	}
	return nil
}

// scan reads a segment's records once: it checks and counts them, adds up
// the bytes of those not acknowledged, notes where the first of them is,
// and syncs the file. In the last segment, what a crash explains (a record
// cut short, or zeros where bytes were lost) is cut off with all after it;
// any other damage is ErrCorrupt. keep is false for a last
// segment a crash left without its header, which is removed.
func (l *Log) scan(i int, last bool, acked uint64) (keep bool, err error) {
	sg := l.segs[i]
	flag := osRDONLY
	if last {
		flag = osRDWR
	}
	f, err := l.fs.OpenFile(sg.name, flag, 0)
	if err != nil {
		return false, fileError(sg.name, err)
	}
	defer f.Close()
	l.scanner = l.scanner.reset(f, 0)
	r := l.scanner
	var magic [len(segMagic)]byte
	n, err := io.ReadFull(r.br, magic[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return false, fileError(sg.name, err)
	}
	if string(magic[:n]) != segMagic {
		zero, zerr := r.restZero()
		if zerr != nil {
			return false, fileError(sg.name, zerr)
		}
		headerless := n < len(segMagic) && strings.HasPrefix(segMagic, string(magic[:n])) ||
			!slices.ContainsFunc(magic[:n], func(b byte) bool { return b != 0 }) && zero
		if !last || !headerless {
			return false, corrupt(sg.name, "not a spool segment")
		}
		// Created by a crash before its header was durable: nothing in it
		// was ever acknowledged.
		if err := l.fs.Remove(sg.name); err != nil {
			return false, fileError(sg.name, err)
		}
		return false, nil
	}
	r.off = int64(len(segMagic))
	for {
		if sg.end() == acked && l.rd.seg < 0 {
			l.rd.seg, l.rd.off = i, r.off
		}
		_, size, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			cut, err := l.damaged(f, sg.name, last, err)
			if !cut {
				return false, err
			}
			break
		}
		if sg.end() >= acked {
			l.used += size
		}
		sg.count++
	}
	if err := f.Sync(); err != nil {
		return false, fileError(sg.name, err)
	}
	return true, nil
}

// damaged decides what a failure to read a record means: a record a crash
// lost in the last segment is cut off with everything after it (never
// synced, so neither was anything after it; the sync after makes the cut
// durable); anything else is an error.
func (l *Log) damaged(f File, name string, last bool, err error) (cut bool, _ error) {
	var bad *badRecord
	if !errors.As(err, &bad) {
		return false, fileError(name, err)
	}
	if !last || !bad.lost {
		return false, corrupt(name, "%s", bad)
	}
	if err := f.Truncate(bad.off); err != nil {
		return false, fileError(name, err)
	}
	return true, nil
}
