//go:build !unix && !windows

package spool

import "os"

// lockFile cannot lock here: a spool that cannot be locked is not opened,
// since two writers on it would send its values twice.
func lockFile(*os.File) error { return ErrNoLock }
