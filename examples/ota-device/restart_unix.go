//go:build unix

package main

import (
	"os"
	"syscall"
)

// restart replaces this process with the program now in self, same
// arguments and environment.
func restart(self string) error {
	return syscall.Exec(self, os.Args, os.Environ())
}
