package filelock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLockIsExclusiveUntilClose(t *testing.T) {
	name := filepath.Join(t.TempDir(), "LOCK")
	open := func() *os.File {
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	a, b := open(), open()
	defer b.Close()
	if err := Lock(a); errors.Is(err, errors.ErrUnsupported) {
		t.Skip("no file lock on this system")
	} else if err != nil {
		t.Fatalf("first Lock = %v", err)
	}
	if err := Lock(b); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock = %v, want ErrLocked", err)
	}
	a.Close()
	if err := Lock(b); err != nil {
		t.Fatalf("Lock after the holder closed = %v", err)
	}
}
