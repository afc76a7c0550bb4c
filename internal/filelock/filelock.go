// Package filelock takes an exclusive, non-waiting lock on an open file,
// held until the file is closed: the one lock of the module, for the
// Writer's spool and the test server's data directory.
package filelock

import (
	"errors"
	"os"
)

// ErrLocked is returned by Lock when another open file holds the lock, in
// this process or another.
var ErrLocked = errors.New("file locked by another open file")

// Lock takes f's exclusive lock without waiting: nil, ErrLocked, or an
// error matching errors.ErrUnsupported where the system has no lock. The
// lock ends when f is closed.
func Lock(f *os.File) error { return lock(f) }
