package ota

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// On Windows the running program cannot be replaced by a rename: Apply
// refuses it up front, as a clear error, and accepts any other file.
func TestReplaceableRefusesRunningProgramOnWindows(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	if err := replaceable(exe, "windows"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("the running program on windows: %v, want errors.ErrUnsupported", err)
	}
	other := filepath.Join(t.TempDir(), "app.exe")
	if err := os.WriteFile(other, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ target, goos string }{{other, "windows"}, {exe, "linux"}, {exe, "darwin"}} {
		if err := replaceable(tc.target, tc.goos); err != nil {
			t.Errorf("%s on %s: %v", filepath.Base(tc.target), tc.goos, err)
		}
	}
}
