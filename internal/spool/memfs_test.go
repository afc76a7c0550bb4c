package spool

import (
	"errors"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// memFS is a file system in memory that keeps, like a disk with a volatile
// write cache, two states: what the process sees, and what a power cut
// leaves (only data a file's Sync covered, only names its directory's
// SyncDir covered). It records an image of both after every operation that
// changes either, from which crashImages builds every state a crash at
// that point could leave.
type memFS struct {
	mu     sync.Mutex
	nodes  map[int]*node
	names  map[string]int // what the process sees: path → node
	synced map[string]int // what a power cut leaves
	nextID int
	free   int64 // bytes that may still be written; < 0: no limit
	used   int64
	locked map[int]bool
	record bool
	images []image
}

type node struct {
	dir     bool
	data    []byte // as the process sees it
	durable []byte // as a power cut leaves it
}

// image is both states after one operation, and that operation's write,
// if it was one, to tear.
type image struct {
	op     string
	nodes  map[int]node
	names  map[string]int
	synced map[string]int
	write  *lastWrite
}

type lastWrite struct {
	id   int
	off  int64
	data []byte
}

// newMemFS returns a file system holding the directory "/".
func newMemFS() *memFS {
	m := &memFS{nodes: map[int]*node{}, names: map[string]int{}, synced: map[string]int{}, locked: map[int]bool{}, free: -1}
	m.nodes[0] = &node{dir: true}
	m.names["/"], m.synced["/"] = 0, 0
	m.nextID = 1
	return m
}

// fromImage is a file system holding the state img's power cut leaves
// (process: the state the process saw, as a kill leaves it).
func fromImage(img image, process bool) *memFS {
	m := newMemFS()
	names := img.synced
	if process {
		names = img.names
	}
	for p, id := range names {
		if !process && !reachable(p, names) {
			continue
		}
		n := img.nodes[id]
		data := n.durable
		if process {
			data = n.data
		}
		if _, ok := m.nodes[id]; !ok {
			m.nodes[id] = &node{dir: n.dir, data: slices.Clone(data), durable: slices.Clone(data)}
		}
		m.names[p], m.synced[p] = id, id
		m.nextID = max(m.nextID, id+1)
	}
	return m
}

// reachable: every directory above p is there too.
func reachable(p string, names map[string]int) bool {
	for d := path.Dir(p); d != p && p != "/"; p, d = d, path.Dir(d) {
		if _, ok := names[d]; !ok {
			return false
		}
	}
	return true
}

func (m *memFS) snap(op string, w *lastWrite) {
	if !m.record {
		return
	}
	img := image{op: op, nodes: map[int]node{}, names: maps.Clone(m.names), synced: maps.Clone(m.synced), write: w}
	for id, n := range m.nodes {
		img.nodes[id] = node{dir: n.dir, data: slices.Clone(n.data), durable: slices.Clone(n.durable)}
	}
	m.images = append(m.images, img)
}

// crashImages is every state a crash after each recorded operation can
// leave: a power cut (what was not synced dropped), the same with the
// last write torn (half of it), lost to zeros, or kept alone (the writes
// before it lost), and a kill (all kept).
func (m *memFS) crashImages() []crashState {
	var out []crashState
	for i, img := range m.images {
		out = append(out, crashState{at: i, what: "power cut after " + img.op, img: img})
		out = append(out, crashState{at: i, what: "kill after " + img.op, img: img, process: true})
		if w := img.write; w != nil {
			for _, torn := range []string{"half", "zeros", "alone"} {
				t := img
				t.nodes = maps.Clone(img.nodes)
				n := t.nodes[w.id]
				d := slices.Clone(n.durable)
				part := w.data[:len(w.data)/2]
				switch torn {
				case "zeros":
					part = make([]byte, len(w.data))
				case "alone": // reached the disk before the writes before it
					part = w.data
				}
				if end := w.off + int64(len(part)); end > int64(len(d)) {
					d = append(d, make([]byte, end-int64(len(d)))...)
				}
				copy(d[w.off:], part)
				n.durable = d
				t.nodes[w.id] = n
				out = append(out, crashState{at: i, what: "power cut tearing (" + torn + ") " + img.op, img: t})
			}
		}
	}
	return out
}

type crashState struct {
	at      int // index of the operation after which it crashed
	what    string
	img     image
	process bool
}

func (m *memFS) clean(name string) string { return path.Clean("/" + name) }

func (m *memFS) lookup(name string) (*node, int, bool) {
	id, ok := m.names[m.clean(name)]
	if !ok {
		return nil, 0, false
	}
	return m.nodes[id], id, true
}

func notExist(op, name string) error { return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist} }

func (m *memFS) OpenFile(name string, flag int, _ fs.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.clean(name)
	n, id, ok := m.lookup(p)
	switch {
	case ok && flag&osEXCL != 0 && flag&osCREATE != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&osCREATE == 0:
		return nil, notExist("open", name)
	case !ok:
		if _, ok := m.names[path.Dir(p)]; !ok {
			return nil, notExist("open", name)
		}
		id = m.nextID
		m.nextID++
		n = &node{}
		m.nodes[id] = n
		m.names[p] = id
		defer m.snap("create "+p, nil)
	case n.dir:
		return nil, &fs.PathError{Op: "open", Path: name, Err: ErrNotRegular}
	}
	if ok && flag&osTRUNC != 0 && len(n.data) > 0 {
		m.used -= int64(len(n.data))
		n.data = nil
		defer m.snap("truncate "+p, nil)
	}
	return &memFile{fs: m, id: id, n: n, name: p}, nil
}

func (m *memFS) Mkdir(name string, _ fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.clean(name)
	if _, _, ok := m.lookup(p); ok {
		return &fs.PathError{Op: "mkdir", Path: name, Err: fs.ErrExist}
	}
	if _, ok := m.names[path.Dir(p)]; !ok {
		return notExist("mkdir", name)
	}
	m.nodes[m.nextID] = &node{dir: true}
	m.names[p] = m.nextID
	m.nextID++
	m.snap("mkdir "+p, nil)
	return nil
}

type memInfo struct {
	name string
	n    node
}

func (i memInfo) Name() string { return path.Base(i.name) }
func (i memInfo) Size() int64  { return int64(len(i.n.data)) }
func (i memInfo) Mode() fs.FileMode {
	if i.n.dir {
		return fs.ModeDir | 0o700
	}
	return 0o600
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.n.dir }
func (i memInfo) Sys() any           { return nil }

func (m *memFS) Stat(name string) (fs.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, _, ok := m.lookup(name)
	if !ok {
		return nil, notExist("stat", name)
	}
	return memInfo{name: name, n: *n}, nil
}

func (m *memFS) ReadDir(name string) ([]fs.DirEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.clean(name)
	var out []fs.DirEntry
	for p, id := range m.names {
		if path.Dir(p) == d && p != d {
			out = append(out, fs.FileInfoToDirEntry(memInfo{name: p, n: *m.nodes[id]}))
		}
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

func (m *memFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, nw := m.clean(oldname), m.clean(newname)
	id, ok := m.names[o]
	if !ok {
		return notExist("rename", oldname)
	}
	if old, ok := m.names[nw]; ok && old != id {
		m.used -= int64(len(m.nodes[old].data))
	}
	delete(m.names, o)
	m.names[nw] = id
	m.snap("rename "+o+" "+nw, nil)
	return nil
}

func (m *memFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.clean(name)
	id, ok := m.names[p]
	if !ok {
		return notExist("remove", name)
	}
	m.used -= int64(len(m.nodes[id].data))
	delete(m.names, p)
	m.snap("remove "+p, nil)
	return nil
}

func (m *memFS) SyncDir(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.clean(name)
	for p := range m.synced {
		if path.Dir(p) == d && p != d {
			delete(m.synced, p)
		}
	}
	for p, id := range m.names {
		if path.Dir(p) == d && p != d {
			m.synced[p] = id
		}
	}
	m.snap("syncdir "+d, nil)
	return nil
}

func (m *memFS) Lock(f File) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mf := f.(*memFile)
	if m.locked[mf.id] {
		return ErrLocked
	}
	m.locked[mf.id] = true
	mf.locks = true
	return nil
}

// kill forgets every lock, as the death of the process holding them does.
func (m *memFS) kill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.locked)
}

type memFile struct {
	fs    *memFS
	id    int
	n     *node
	name  string
	pos   int64
	locks bool
}

func (f *memFile) Read(b []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.pos >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(b, f.n.data[f.pos:])
	f.pos += int64(n)
	return n, nil
}

func (f *memFile) Write(b []byte) (int, error) {
	n, err := f.WriteAt(b, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *memFile) WriteAt(b []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	m := f.fs
	grow := max(off+int64(len(b))-int64(len(f.n.data)), 0)
	var err error
	if m.free >= 0 && m.used+grow > m.free {
		fit := max(m.free-m.used, 0)
		b = b[:max(min(int64(len(b)), int64(len(f.n.data))-off+fit), 0)]
		grow = max(off+int64(len(b))-int64(len(f.n.data)), 0)
		err = &fs.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
	}
	if end := off + int64(len(b)); end > int64(len(f.n.data)) {
		f.n.data = append(f.n.data, make([]byte, end-int64(len(f.n.data)))...)
	}
	copy(f.n.data[off:], b)
	m.used += grow
	if len(b) > 0 {
		m.snap("write "+f.name, &lastWrite{id: f.id, off: off, data: slices.Clone(b)})
	}
	return len(b), err
}

func (f *memFile) Seek(off int64, whence int) (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	switch whence {
	case io.SeekStart:
		f.pos = off
	case io.SeekCurrent:
		f.pos += off
	case io.SeekEnd:
		f.pos = int64(len(f.n.data)) + off
	}
	return f.pos, nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	f.n.durable = slices.Clone(f.n.data)
	f.fs.snap("sync "+f.name, nil)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if size > int64(len(f.n.data)) {
		return errors.New("memfs: truncate beyond the end")
	}
	f.fs.used -= int64(len(f.n.data)) - size
	f.n.data = f.n.data[:size]
	f.fs.snap("truncate "+f.name, nil)
	return nil
}

func (f *memFile) Stat() (fs.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return memInfo{name: f.name, n: *f.n}, nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.locks {
		delete(f.fs.locked, f.id)
		f.locks = false
	}
	return nil
}
