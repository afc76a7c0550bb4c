package spool

import (
	"errors"
	"io"
	"io/fs"
	"os"

	"github.com/thethings-go/thethings/internal/filelock"
)

// FS is every file-system operation the spool makes: the real one ([OS])
// in production, a recording one in the crash tests, which rebuild from its
// log every state a power cut could leave.
type FS interface {
	// OpenFile opens a regular file and only that: a symlink is not
	// followed, a FIFO or device is an error, and the open never waits.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// Mkdir makes one directory.
	Mkdir(name string, perm fs.FileMode) error
	// Stat describes name.
	Stat(name string) (fs.FileInfo, error)
	ReadDir(name string) ([]fs.DirEntry, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	// SyncDir makes the directory's entries durable.
	SyncDir(name string) error
	// Lock takes f's exclusive lock without waiting: ErrLocked when another
	// open file holds it; ErrNoLock where the system has no lock.
	Lock(f File) error
}

// File is an open spool file.
type File interface {
	io.Reader
	io.Writer
	io.WriterAt
	io.Seeker
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Close() error
}

// OS is the operating system's file system.
var OS FS = osFS{}

type osFS struct{}

func (osFS) Mkdir(name string, perm fs.FileMode) error  { return os.Mkdir(name, perm) }
func (osFS) Stat(name string) (fs.FileInfo, error)      { return os.Stat(name) }
func (osFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }
func (osFS) Rename(oldname, newname string) error       { return os.Rename(oldname, newname) }
func (osFS) Remove(name string) error                   { return os.Remove(name) }
func (osFS) Lock(f File) error {
	of, ok := f.(*os.File)
	if !ok {
		return ErrNoLock
	}
	switch err := filelock.Lock(of); {
	case errors.Is(err, filelock.ErrLocked):
		return ErrLocked
	case errors.Is(err, errors.ErrUnsupported):
		return ErrNoLock
	default:
		return err
	}
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

func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := openRegular(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}
