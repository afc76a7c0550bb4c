//go:build !unix

package thethings

import "os"

// lockFile does nothing where flock is not available: two writers on one
// spool directory are not detected there.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) {}
