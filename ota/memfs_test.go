package ota

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// memFS is a file system in memory that knows what a power cut keeps: a
// file's data and mode as of its last fsync, and the directory as of its
// last fsync plus a prefix of the entry changes made since (journaled
// file systems apply them in order; others in any order, so the tests
// keep any subset of them). Recording, it keeps the image a power cut
// would leave after each operation.
type memFS struct {
	inodes  []inode
	entries map[string]int // name → inode, as the running program sees it
	durable map[string]int // as of the last directory fsync
	pending []dirOp        // entry changes since
	noLinks bool           // a file system without hard links (FAT)
	seq     int            // temporary names
	ops     int            // operations that change something, so far
	failAt  int            // when positive, the operation that fails

	recording bool
	images    []crashBase
	log       []string
}

type inode struct {
	data, synced   []byte // never changed in place: shared by images
	mode, syncMode fs.FileMode
}

type dirOp struct {
	op, name, from string
	ino            int
}

// crashBase is what a power cut after some operation keeps.
type crashBase struct {
	inodes  []inode
	durable map[string]int
	pending []dirOp
	op      string         // the last operation
	entries map[string]int // as the program saw them: what a kill -9 keeps
}

func newMemFS(files map[string]string) *memFS {
	m := &memFS{entries: map[string]int{}}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		b := []byte(files[name])
		m.inodes = append(m.inodes, inode{data: b, synced: b, mode: 0o755, syncMode: 0o755})
		m.entries[name] = len(m.inodes) - 1
	}
	m.durable = maps.Clone(m.entries)
	return m
}

// clone is m as it is, not recording.
func (m *memFS) clone() *memFS {
	return &memFS{inodes: slices.Clone(m.inodes), entries: maps.Clone(m.entries), durable: maps.Clone(m.durable),
		pending: slices.Clone(m.pending), noLinks: m.noLinks, seq: m.seq}
}

// record starts keeping the images of power cuts, from now on.
func (m *memFS) record() *memFS {
	m.recording, m.images, m.log = true, nil, nil
	m.snap("start")
	return m
}

func (m *memFS) snap(op string) {
	m.log = append(m.log, op)
	if m.recording {
		m.images = append(m.images, crashBase{slices.Clone(m.inodes), maps.Clone(m.durable), slices.Clone(m.pending), op, maps.Clone(m.entries)})
	}
}

// crashImage is one file system a power cut can leave.
type crashImage struct {
	fs   *memFS
	what string
}

// crashImages returns every distinct file system a power cut during the
// recording could leave: after each operation, with any subset of the
// directory changes not yet fsync'd (taken in order), and every file's
// data as of its last fsync; and what a kill -9 leaves, everything as the
// program saw it.
func (m *memFS) crashImages() []crashImage {
	seen := map[string]bool{}
	var out []crashImage
	for i, b := range m.images {
		k := &memFS{entries: maps.Clone(b.entries), durable: maps.Clone(b.entries), noLinks: m.noLinks, seq: m.seq + 1000}
		for _, in := range b.inodes {
			k.inodes = append(k.inodes, inode{data: in.data, synced: in.data, mode: in.mode, syncMode: in.mode})
		}
		if key := k.key(); !seen[key] {
			seen[key] = true
			out = append(out, crashImage{k, fmt.Sprintf("kill -9 after op %d (%s); log: %s", i, b.op, strings.Join(m.log[:i+1], ", "))})
		}
		if len(b.pending) > 12 {
			panic("too many directory changes without a directory fsync to try every subset")
		}
		for set := 0; set < 1<<len(b.pending); set++ {
			c := &memFS{entries: maps.Clone(b.durable), noLinks: m.noLinks, seq: m.seq + 1000}
			for _, in := range b.inodes {
				c.inodes = append(c.inodes, inode{data: in.synced, synced: in.synced, mode: in.syncMode, syncMode: in.syncMode})
			}
			kept := 0
			for k, o := range b.pending {
				if set&(1<<k) == 0 {
					continue
				}
				kept++
				switch o.op {
				case "create", "link":
					c.entries[o.name] = o.ino
				case "rename":
					delete(c.entries, o.from)
					c.entries[o.name] = o.ino
				case "remove":
					delete(c.entries, o.name)
				}
			}
			c.durable = maps.Clone(c.entries)
			if k := c.key(); !seen[k] {
				seen[k] = true
				out = append(out, crashImage{c, fmt.Sprintf("power cut after op %d (%s) keeping %d of %d directory changes (set %b); log: %s",
					i, b.op, kept, len(b.pending), set, strings.Join(m.log[:i+1], ", "))})
			}
		}
	}
	return out
}

// key identifies an image by its names, contents and modes.
func (m *memFS) key() string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(m.entries)) {
		in := m.inodes[m.entries[name]]
		fmt.Fprintf(&b, "%s %o %q\n", name, in.mode, in.data)
	}
	return b.String()
}

// file returns the content of name.
func (m *memFS) file(name string) (string, fs.FileMode, bool) {
	ino, ok := m.entries[name]
	if !ok {
		return "", 0, false
	}
	return string(m.inodes[ino].data), m.inodes[ino].mode, true
}

// fail counts an operation that changes something, and fails the one at
// failAt.
func (m *memFS) fail(op, name string) error {
	m.ops++
	if m.ops == m.failAt {
		return &fs.PathError{Op: op, Path: name, Err: errors.New("injected I/O error")}
	}
	return nil
}

func (m *memFS) entry(op, name string) (int, error) {
	ino, ok := m.entries[name]
	if !ok {
		return 0, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return ino, nil
}

func (m *memFS) change(o dirOp) {
	switch o.op {
	case "create", "link":
		m.entries[o.name] = o.ino
	case "rename":
		delete(m.entries, o.from)
		m.entries[o.name] = o.ino
	case "remove":
		delete(m.entries, o.name)
	}
	m.pending = append(m.pending, o)
	m.snap(o.op + " " + filepath.Base(o.from) + " " + filepath.Base(o.name))
}

func (m *memFS) Open(name string) (readFile, error) {
	ino, err := m.entry("open", name)
	if err != nil {
		return nil, err
	}
	return struct {
		*bytes.Reader
		io.Closer
	}{bytes.NewReader(m.inodes[ino].data), io.NopCloser(nil)}, nil
}

func (m *memFS) Stat(name string) (fs.FileInfo, error) {
	ino, err := m.entry("stat", name)
	if err != nil {
		return nil, err
	}
	return fileInfo{filepath.Base(name), m.inodes[ino]}, nil
}

func (m *memFS) CreateTemp(dir, pattern string) (tempFile, error) {
	if err := m.fail("create", dir); err != nil {
		return nil, err
	}
	m.seq++
	name := filepath.Join(dir, strings.Replace(pattern, "*", fmt.Sprint(m.seq), 1))
	if _, ok := m.entries[name]; ok {
		return nil, &fs.PathError{Op: "create", Path: name, Err: fs.ErrExist}
	}
	m.inodes = append(m.inodes, inode{mode: 0o600})
	m.change(dirOp{op: "create", name: name, ino: len(m.inodes) - 1})
	return &memFile{m: m, name: name, ino: len(m.inodes) - 1}, nil
}

func (m *memFS) Rename(oldname, newname string) error {
	if err := m.fail("rename", newname); err != nil {
		return err
	}
	ino, err := m.entry("rename", oldname)
	if err != nil {
		return err
	}
	m.change(dirOp{op: "rename", name: newname, from: oldname, ino: ino})
	return nil
}

func (m *memFS) Link(oldname, newname string) error {
	if err := m.fail("link", newname); err != nil {
		return err
	}
	if m.noLinks {
		return &fs.PathError{Op: "link", Path: newname, Err: fs.ErrPermission}
	}
	ino, err := m.entry("link", oldname)
	if err != nil {
		return err
	}
	if _, ok := m.entries[newname]; ok {
		return &fs.PathError{Op: "link", Path: newname, Err: fs.ErrExist}
	}
	m.change(dirOp{op: "link", name: newname, from: oldname, ino: ino})
	return nil
}

func (m *memFS) Remove(name string) error {
	if err := m.fail("remove", name); err != nil {
		return err
	}
	if _, err := m.entry("remove", name); err != nil {
		return err
	}
	m.change(dirOp{op: "remove", name: name})
	return nil
}

func (m *memFS) ReadDir(dir string) ([]string, error) {
	var names []string
	for name := range m.entries {
		if filepath.Dir(name) == dir {
			names = append(names, filepath.Base(name))
		}
	}
	slices.Sort(names)
	return names, nil
}

func (m *memFS) SyncDir(dir string) error {
	if err := m.fail("syncdir", dir); err != nil {
		return err
	}
	m.durable, m.pending = maps.Clone(m.entries), nil
	m.snap("syncdir")
	return nil
}

type memFile struct {
	m      *memFS
	name   string
	ino    int
	closed bool
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) Write(p []byte) (int, error) {
	if f.closed {
		return 0, fs.ErrClosed
	}
	if err := f.m.fail("write", f.name); err != nil {
		return 0, err
	}
	in := &f.m.inodes[f.ino]
	in.data = append(slices.Clip(in.data), p...) // a new array: images keep theirs
	f.m.snap("write " + filepath.Base(f.name))
	return len(p), nil
}

func (f *memFile) Chmod(mode fs.FileMode) error {
	if err := f.m.fail("chmod", f.name); err != nil {
		return err
	}
	f.m.inodes[f.ino].mode = mode
	return nil
}

func (f *memFile) Sync() error {
	if err := f.m.fail("fsync", f.name); err != nil {
		return err
	}
	in := &f.m.inodes[f.ino]
	in.synced, in.syncMode = in.data, in.mode
	f.m.snap("fsync " + filepath.Base(f.name))
	return nil
}

func (f *memFile) Close() error { f.closed = true; return nil }

type fileInfo struct {
	name string
	in   inode
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return int64(len(i.in.data)) }
func (i fileInfo) Mode() fs.FileMode  { return i.in.mode }
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return false }
func (i fileInfo) Sys() any           { return nil }
