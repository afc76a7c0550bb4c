package crashfs

import (
	"errors"
	"io"
	"io/fs"
	"path"
	"slices"
	"syscall"
	"time"
)

type info struct {
	name string
	n    node
}

func (i info) Name() string       { return path.Base(i.name) }
func (i info) Size() int64        { return int64(len(i.n.data)) }
func (i info) ModTime() time.Time { return time.Time{} }
func (i info) IsDir() bool        { return i.n.dir }
func (i info) Sys() any           { return nil }
func (i info) Mode() fs.FileMode {
	if i.n.dir {
		return fs.ModeDir | i.n.mode
	}
	return i.n.mode
}

type file struct {
	m      *FS
	id     int
	name   string
	pos    int64
	locks  bool
	closed bool
}

func (f *file) Name() string { return f.name }

func (f *file) Read(b []byte) (int, error) {
	n, err := f.ReadAt(b, f.pos)
	f.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *file) ReadAt(b []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	data := f.m.nodes[f.id].data
	if off >= int64(len(data)) {
		return 0, io.EOF
	}
	n := copy(b, data[off:])
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (f *file) Write(b []byte) (int, error) {
	n, err := f.WriteAt(b, f.pos)
	f.pos += int64(n)
	return n, err
}

// WriteAt writes what fits in the free space; the rest is ENOSPC.
func (f *file) WriteAt(b []byte, off int64) (int, error) {
	m := f.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if f.closed {
		return 0, pathError("write", f.name, fs.ErrClosed)
	}
	if err := m.try("write", f.name); err != nil {
		return 0, err
	}
	n := m.nodes[f.id]
	var err error
	if grow := off + int64(len(b)) - int64(len(n.data)); m.free >= 0 && grow > 0 && m.used()+grow > m.free {
		fit := max(m.free-m.used(), 0)
		b = b[:max(min(int64(len(b)), int64(len(n.data))-off+fit), 0)]
		err = pathError("write", f.name, syscall.ENOSPC)
	}
	if len(b) > 0 {
		n.data = splice(n.data, off, b)
		m.nodes[f.id] = n
		m.snap("write "+f.name, &write{id: f.id, off: off, data: slices.Clone(b)})
	}
	return len(b), err
}

func (f *file) Seek(off int64, whence int) (int64, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	switch whence {
	case io.SeekCurrent:
		off += f.pos
	case io.SeekEnd:
		off += int64(len(f.m.nodes[f.id].data))
	}
	f.pos = off
	return f.pos, nil
}

// update changes f's node by fn, an operation op that changes something.
func (f *file) update(op string, fn func(n *node) error) error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.m.try(op, f.name); err != nil {
		return err
	}
	n := f.m.nodes[f.id]
	if err := fn(&n); err != nil {
		return err
	}
	f.m.nodes[f.id] = n
	f.m.snap(op+" "+f.name, nil)
	return nil
}

func (f *file) Sync() error {
	return f.update("fsync", func(n *node) error {
		n.synced, n.syncMode = n.data, n.mode
		return nil
	})
}

func (f *file) Chmod(mode fs.FileMode) error {
	return f.update("chmod", func(n *node) error {
		n.mode = mode
		return nil
	})
}

// Truncate cuts the file short; it does not grow it.
func (f *file) Truncate(size int64) error {
	return f.update("truncate", func(n *node) error {
		if size > int64(len(n.data)) {
			return errors.New("crashfs: truncate beyond the end")
		}
		n.data = n.data[:size:size]
		return nil
	})
}

func (f *file) Stat() (fs.FileInfo, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	return info{f.name, f.m.nodes[f.id]}, nil
}

// Close ends f and its lock.
func (f *file) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.locks {
		delete(f.m.locked, f.id)
		f.locks = false
	}
	f.closed = true
	return nil
}
