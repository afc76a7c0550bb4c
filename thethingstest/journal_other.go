//go:build !unix

package thethingstest

import "os"

// lockFile does nothing where flock is not available: two servers on one
// data directory are not detected there.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) {}
