package ota

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// fileSystem is every file operation of an update, rollback and commit:
// the seam through which the tests record them and cut the power after
// each one.
type fileSystem interface {
	Open(name string) (readFile, error)
	Stat(name string) (fs.FileInfo, error)
	CreateTemp(dir, pattern string) (tempFile, error)
	Rename(oldname, newname string) error
	Link(oldname, newname string) error
	Remove(name string) error
	ReadDir(dir string) ([]string, error)
	SyncDir(dir string) error
}

// readFile is a file open for reading.
type readFile interface {
	io.Reader
	io.ReaderAt
	io.Closer
}

// tempFile is a file being written.
type tempFile interface {
	io.Writer
	Name() string
	Chmod(mode fs.FileMode) error
	Sync() error
	Close() error
}

// osFS is the operating system's file system.
type osFS struct{}

func (osFS) Open(name string) (readFile, error)         { return os.Open(name) }
func (osFS) Stat(name string) (fs.FileInfo, error)      { return os.Stat(name) }
func (osFS) Rename(oldname, newname string) error       { return os.Rename(oldname, newname) }
func (osFS) Link(oldname, newname string) error         { return os.Link(oldname, newname) }
func (osFS) Remove(name string) error                   { return os.Remove(name) }
func (osFS) CreateTemp(dir, p string) (tempFile, error) { return os.CreateTemp(dir, p) }

func (osFS) ReadDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, err
}

// SyncDir makes the directory's entries (renames, links, removals)
// durable. Windows cannot open a directory for it; there it is skipped.
func (osFS) SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Base(dir), err)
	}
	return nil
}
