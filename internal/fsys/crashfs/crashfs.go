// Package crashfs is an [fsys.FS] in memory that knows what a crash keeps,
// for the crash tests of the spool and the OTA updater. Like
// net/http/httptest it is a test double: only _test.go files import it.
//
// It keeps two states, as a disk with a volatile write cache does: what
// the process sees, and what a power cut leaves. A power cut keeps a
// file's data and mode as of its last Sync, and a directory's entries as
// of its last SyncDir plus any subset of the entry changes made since (a
// file system may write them in any order). The last write, not synced,
// may also be torn: half of it reached the disk, or zeros did, or it did
// alone while the unsynced writes before it were lost. A kill keeps what
// the process saw. Recording (Record), it keeps both states after every
// operation that changes something, and Crashes builds from them every
// state a crash after that operation can leave, each a new FS to start
// the program on again.
//
// FailAt makes one operation fail, SetFree fills the disk, NoLinks makes
// a file system without hard links (FAT), Lock locks a file until it is
// closed or Kill ends the process holding it.
package crashfs

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/thethings-go/thethings/internal/fsys"
)

// FS is a file system in memory. Set its fields before its first use.
type FS struct {
	// FailAt, when positive, is the operation that changes something (as
	// Ops counts them) that fails, with ErrInjected.
	FailAt int
	// NoLinks makes Link fail, as on a file system without hard links.
	NoLinks bool

	mu      sync.Mutex
	nodes   map[int]node
	names   map[string]int // what the process sees: path → node
	durable map[string]int // the entries as of each directory's SyncDir
	pending []change       // entry changes since, oldest first
	next    int            // id of the next node
	temps   int            // CreateTemp's names so far
	ops     int
	free    int64 // bytes the files may hold; < 0: no limit
	locked  map[int]bool
	images  []image // nil: not recording
}

// node is a file or directory. Its data slices are never changed in
// place: images share them.
type node struct {
	dir            bool
	data, synced   []byte // as the process sees it, as a power cut leaves it
	mode, syncMode fs.FileMode
}

// change is a directory entry change not synced yet.
type change struct {
	op, name, from string
	id             int
}

// ErrInjected is the error of the operation FailAt names.
var ErrInjected = errors.New("injected I/O error")

var _ fsys.FS = (*FS)(nil)

// New returns a file system holding the directory "/".
func New() *FS {
	return &FS{nodes: map[int]node{0: {dir: true, mode: 0o700, syncMode: 0o700}},
		names: map[string]int{"/": 0}, durable: map[string]int{"/": 0}, next: 1, free: -1, locked: map[int]bool{}}
}

// Put makes a durable file of the given data and mode, and the
// directories above it, and returns m.
func (m *FS) Put(name, data string, mode fs.FileMode) *FS {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := clean(name)
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if _, ok := m.names[d]; !ok {
			m.nodes[m.next] = node{dir: true, mode: 0o700, syncMode: 0o700}
			m.names[d], m.durable[d] = m.next, m.next
			m.next++
		}
	}
	m.nodes[m.next] = node{data: []byte(data), synced: []byte(data), mode: mode, syncMode: mode}
	m.names[p], m.durable[p] = m.next, m.next
	m.next++
	return m
}

// Content returns the data and mode of the file name, as the process sees
// them.
func (m *FS) Content(name string) (data string, mode fs.FileMode, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, ok := m.names[clean(name)]
	if !ok {
		return "", 0, false
	}
	return string(m.nodes[id].data), m.nodes[id].mode, true
}

// SetFree lets the files grow by n bytes more, then writes fail with
// ENOSPC; n < 0: no limit.
func (m *FS) SetFree(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.free = -1
	if n >= 0 {
		m.free = m.used() + n
	}
}

// used is the bytes of the files that have a name.
func (m *FS) used() int64 {
	var n int64
	for _, id := range slices.Compact(slices.Sorted(maps.Values(m.names))) {
		n += int64(len(m.nodes[id].data))
	}
	return n
}

// Ops is the number of operations that changed something (or tried to)
// so far.
func (m *FS) Ops() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ops
}

// Kill forgets every lock, as the death of the process holding them does.
func (m *FS) Kill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.locked)
}

// Clone returns m as it is, not recording, with no failure set.
func (m *FS) Clone() *FS {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &FS{NoLinks: m.NoLinks, nodes: maps.Clone(m.nodes), names: maps.Clone(m.names),
		durable: maps.Clone(m.durable), pending: slices.Clone(m.pending), next: m.next, temps: m.temps,
		free: -1, locked: map[int]bool{}}
}

// apply makes change c to names.
func apply(names map[string]int, c change) {
	switch c.op {
	case "create", "link":
		names[c.name] = c.id
	case "rename":
		delete(names, c.from)
		names[c.name] = c.id
	case "remove":
		delete(names, c.name)
	}
}

func clean(name string) string { return path.Clean("/" + filepath.ToSlash(name)) }

func pathError(op, name string, err error) error { return &fs.PathError{Op: op, Path: name, Err: err} }

// try counts an operation that changes something and fails the one at
// FailAt. m.mu is held.
func (m *FS) try(op, name string) error {
	m.ops++
	if m.ops == m.FailAt {
		return pathError(op, name, ErrInjected)
	}
	return nil
}

// change makes c, keeps it to be synced, and records it. m.mu is held.
func (m *FS) change(c change) {
	apply(m.names, c)
	m.pending = append(m.pending, c)
	m.snap(strings.TrimSpace(c.op+" "+c.from+" "+c.name), nil)
}

// create makes a node named p, in a directory that exists. m.mu is held.
func (m *FS) create(p string, n node) (int, error) {
	if _, ok := m.names[p]; ok {
		return 0, pathError("create", p, fs.ErrExist)
	}
	if d, ok := m.names[path.Dir(p)]; !ok || !m.nodes[d].dir {
		return 0, pathError("create", p, fs.ErrNotExist)
	}
	id := m.next
	m.next++
	n.syncMode = n.mode
	m.nodes[id] = n
	m.change(change{op: "create", name: p, id: id})
	return id, nil
}

func (m *FS) lookup(op, name string) (int, error) {
	id, ok := m.names[clean(name)]
	if !ok {
		return 0, pathError(op, name, fs.ErrNotExist)
	}
	return id, nil
}

// Open opens name for reading.
func (m *FS) Open(name string) (fsys.File, error) { return m.OpenFile(name, os.O_RDONLY, 0) }

// OpenFile opens a file, not a directory (ErrNotRegular).
func (m *FS) OpenFile(name string, flag int, perm fs.FileMode) (fsys.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := clean(name)
	if flag&(os.O_CREATE|os.O_TRUNC) != 0 {
		if err := m.try("open", name); err != nil {
			return nil, err
		}
	}
	id, ok := m.names[p]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, pathError("open", name, fs.ErrExist)
	case !ok && flag&os.O_CREATE == 0:
		return nil, pathError("open", name, fs.ErrNotExist)
	case !ok:
		var err error
		if id, err = m.create(p, node{mode: perm}); err != nil {
			return nil, err
		}
	case m.nodes[id].dir:
		return nil, pathError("open", name, fsys.ErrNotRegular)
	case flag&os.O_TRUNC != 0 && len(m.nodes[id].data) > 0:
		n := m.nodes[id]
		n.data = nil
		m.nodes[id] = n
		m.snap("truncate "+p, nil)
	}
	return &file{m: m, id: id, name: p}, nil
}

// CreateTemp creates a new file, mode 0600, named as os.CreateTemp names
// it, with a counter for the random part.
func (m *FS) CreateTemp(dir, pattern string) (fsys.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.try("create", dir); err != nil {
		return nil, err
	}
	for {
		m.temps++
		p := clean(path.Join(filepath.ToSlash(dir), strings.Replace(pattern, "*", fmt.Sprint(m.temps), 1)))
		if !strings.Contains(pattern, "*") {
			p += fmt.Sprint(m.temps)
		}
		if _, ok := m.names[p]; ok {
			continue
		}
		id, err := m.create(p, node{mode: 0o600})
		if err != nil {
			return nil, err
		}
		return &file{m: m, id: id, name: p}, nil
	}
}

// Mkdir makes a directory.
func (m *FS) Mkdir(name string, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.try("mkdir", name); err != nil {
		return err
	}
	_, err := m.create(clean(name), node{dir: true, mode: perm})
	return err
}

// Stat describes name.
func (m *FS) Stat(name string) (fs.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id, err := m.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	return info{clean(name), m.nodes[id]}, nil
}

// ReadDir lists a directory, sorted by name.
func (m *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.lookup("readdir", name); err != nil {
		return nil, err
	}
	d := clean(name)
	var out []fs.DirEntry
	for _, p := range slices.Sorted(maps.Keys(m.names)) {
		if path.Dir(p) == d && p != d {
			out = append(out, fs.FileInfoToDirEntry(info{p, m.nodes[m.names[p]]}))
		}
	}
	return out, nil
}

// Rename renames a file in its directory.
func (m *FS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.try("rename", newname); err != nil {
		return err
	}
	id, err := m.lookup("rename", oldname)
	if err != nil {
		return err
	}
	m.change(change{op: "rename", name: clean(newname), from: clean(oldname), id: id})
	return nil
}

// Link makes newname a hard link to oldname; with NoLinks it fails.
func (m *FS) Link(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.try("link", newname); err != nil {
		return err
	}
	if m.NoLinks {
		return pathError("link", newname, fs.ErrPermission)
	}
	id, err := m.lookup("link", oldname)
	if err != nil {
		return err
	}
	if _, ok := m.names[clean(newname)]; ok {
		return pathError("link", newname, fs.ErrExist)
	}
	m.change(change{op: "link", name: clean(newname), from: clean(oldname), id: id})
	return nil
}

// Remove removes a name.
func (m *FS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.try("remove", name); err != nil {
		return err
	}
	if _, err := m.lookup("remove", name); err != nil {
		return err
	}
	m.change(change{op: "remove", name: clean(name)})
	return nil
}

// SyncDir makes the entries of the directory durable.
func (m *FS) SyncDir(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.try("syncdir", name); err != nil {
		return err
	}
	d := clean(name)
	in := func(p string) bool { return path.Dir(p) == d && p != d }
	maps.DeleteFunc(m.durable, func(p string, _ int) bool { return in(p) })
	for p, id := range m.names {
		if in(p) {
			m.durable[p] = id
		}
	}
	m.pending = slices.DeleteFunc(m.pending, func(c change) bool { return in(c.name) })
	m.snap("syncdir "+d, nil)
	return nil
}

// Lock locks f's file until f is closed or Kill.
func (m *FS) Lock(f fsys.File) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	mf := f.(*file)
	if m.locked[mf.id] {
		return fsys.ErrLocked
	}
	m.locked[mf.id] = true
	mf.locks = true
	return nil
}
