//go:build !unix

package main

import (
	"errors"
	"os"
	"os/exec"
)

// restart runs the program now in self with the same arguments and
// environment, and exits with its status: where a process cannot replace
// itself.
func restart(self string) error {
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		return err
	}
	os.Exit(0)
	return nil
}
