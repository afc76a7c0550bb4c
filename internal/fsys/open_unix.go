//go:build unix

package fsys

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// openRegular opens name without following a symlink and without waiting
// (a FIFO would block a plain open), then checks that it is a regular
// file before anything reads it.
func openRegular(name string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, perm)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.EMLINK) || errors.Is(err, syscall.EISDIR) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: ErrNotRegular}
		}
		return nil, err
	}
	return regular(f, name)
}

func isUnsupported(err error) bool {
	return errors.Is(err, errors.ErrUnsupported) || errors.Is(err, syscall.EINVAL)
}

// PermBits tells whether a file's permission bits say who may write it.
const PermBits = true
