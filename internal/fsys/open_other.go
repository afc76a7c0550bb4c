//go:build !unix

package fsys

import (
	"io/fs"
	"os"
)

// openRegular refuses a name that is not a regular file before opening it
// (no FIFOs here to block an open), then checks the file it opened.
func openRegular(name string, flag int, perm fs.FileMode) (*os.File, error) {
	if st, err := os.Lstat(name); err == nil && !st.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: ErrNotRegular}
	}
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return regular(f, name)
}

// isUnsupported: a directory cannot be synced here (Windows refuses
// FlushFileBuffers on one; NTFS journals its entries).
func isUnsupported(error) bool { return true }

// PermBits tells whether a file's permission bits say who may write it:
// not here.
const PermBits = false
