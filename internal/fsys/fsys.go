// Package fsys is the one file-system seam of the module: every file
// operation of the Writer's spool (internal/spool) and of the OTA updater
// (ota) goes through an FS, the operating system's ([OS]) in production,
// a crash-simulating one (package crashfs) in their crash tests.
package fsys

import (
	"errors"
	"io"
	"io/fs"
	"os"

	"github.com/thethings-go/thethings/internal/filelock"
)

// FS is every file-system operation the spool and the updater make.
type FS interface {
	// Open opens name for reading; a symlink is followed.
	Open(name string) (File, error)
	// OpenFile opens a regular file and only that: a symlink is not
	// followed, a FIFO or device is ErrNotRegular, and the open never
	// waits.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// CreateTemp creates a new file in dir, named by pattern as
	// [os.CreateTemp] names it, open for writing.
	CreateTemp(dir, pattern string) (File, error)
	// Mkdir makes one directory.
	Mkdir(name string, perm fs.FileMode) error
	// Stat describes name; a symlink is followed.
	Stat(name string) (fs.FileInfo, error)
	// ReadDir lists a directory, sorted by name.
	ReadDir(name string) ([]fs.DirEntry, error)
	Rename(oldname, newname string) error
	// Link makes newname a hard link to oldname.
	Link(oldname, newname string) error
	Remove(name string) error
	// SyncDir makes the directory's entries (creations, renames, links,
	// removals) durable; where a directory cannot be synced (Windows, whose
	// NTFS journals its entries), it is nil.
	SyncDir(name string) error
	// Lock takes f's exclusive lock without waiting: ErrLocked when another
	// open file holds it, an error matching [errors.ErrUnsupported] where
	// the system has no lock. The lock ends when f is closed.
	Lock(f File) error
}

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Seeker
	Name() string
	Chmod(mode fs.FileMode) error
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Close() error
}

var (
	// ErrNotRegular: a name is a symlink, FIFO, device or directory where
	// a regular file was expected.
	ErrNotRegular = errors.New("not a regular file")
	// ErrLocked is returned by Lock when another open file holds the lock.
	ErrLocked = filelock.ErrLocked
)

// OS is the operating system's file system.
var OS FS = osFS{}

type osFS struct{}

func (osFS) Open(name string) (File, error)             { return os.Open(name) }
func (osFS) CreateTemp(dir, p string) (File, error)     { return os.CreateTemp(dir, p) }
func (osFS) Mkdir(name string, perm fs.FileMode) error  { return os.Mkdir(name, perm) }
func (osFS) Stat(name string) (fs.FileInfo, error)      { return os.Stat(name) }
func (osFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }
func (osFS) Rename(oldname, newname string) error       { return os.Rename(oldname, newname) }
func (osFS) Link(oldname, newname string) error         { return os.Link(oldname, newname) }
func (osFS) Remove(name string) error                   { return os.Remove(name) }

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := openRegular(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (osFS) Lock(f File) error {
	of, ok := f.(*os.File)
	if !ok {
		return errors.ErrUnsupported
	}
	return filelock.Lock(of)
}

func (osFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !isUnsupported(err) {
		return err
	}
	return nil
}

// regular returns f, opened as name, if it is a regular file; else it
// closes f and refuses it.
func regular(f *os.File, name string) (*os.File, error) {
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: ErrNotRegular}
	}
	return f, nil
}
