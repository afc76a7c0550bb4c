//go:build unix

package thethingstest

import (
	"errors"
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on f, or answers ErrDataDirInUse when
// another open file holds one, in this process or another. With LOCK_NB
// flock does not wait, so it is not interrupted.
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrDataDirInUse
	}
	return err
}

func unlockFile(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
