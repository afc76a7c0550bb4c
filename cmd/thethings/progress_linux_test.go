package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadProgressOnTerminal: with stderr a terminal, read redraws a
// progress line there; stdout carries the values only.
func TestReadProgressOnTerminal(t *testing.T) {
	srv, tok := setup(t)
	seed(t, srv, tok, "p", 2500)
	// A pseudo-terminal's two ends.
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer master.Close()
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Skipf("unlock pseudo-terminal: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Skipf("pseudo-terminal number: %v", e)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pseudo-terminal: %v", err)
	}

	cmd := exec.Command(bin, "read", "p")
	cmd.Env, _ = cliEnv(srv.URL(), tok)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, slave
	require.NoError(t, cmd.Start())
	slave.Close()
	term := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(master) // ends with EIO once the child has exited
		term <- string(b)
	}()
	require.NoError(t, cmd.Wait())
	got := <-term
	assert.Contains(t, got, "\r1000 values, back to 2024-05-01T00:25:00Z")
	assert.Contains(t, got, "2500 values in ")
	assert.Equal(t, 2501, strings.Count(stdout.String(), "\n"), "no progress on stdout")
}
