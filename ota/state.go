package ota

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// Phases of the trial state; see the package documentation.
const (
	phaseTrial      = "trial"       // an update is in place or about to be, not committed
	phaseRolledBack = "rolled-back" // a trial was rolled back; to be reported
	phaseFailed     = "failed"      // an Apply was cut before its swap; to be reported
	phaseRejected   = "rejected"    // a rolled-back version, reported: not applied again
)

// maxState bounds the state file read.
const maxState = 16 << 10

// state is the content of target+".ota-state".
type state struct {
	Phase  string `json:"phase"`
	From   string `json:"from,omitempty"`   // the version before the update
	To     string `json:"to"`               // the version of the update
	SHA256 string `json:"sha256,omitempty"` // of the new target file
	Boots  int    `json:"boots"`            // starts of the new version since Apply
	Error  string `json:"error,omitempty"`
}

func statePath(target string) string    { return target + ".ota-state" }
func previousPath(target string) string { return target + ".previous" }

// readState returns the target's state; ok is false when there is none.
func readState(target string) (st state, ok bool, err error) {
	f, err := os.Open(statePath(target))
	if errors.Is(err, fs.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("thethings: ota: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxState))
	if err != nil {
		return st, false, fmt.Errorf("thethings: ota: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Phase == "" {
		return st, false, fmt.Errorf("thethings: ota: state file %s is damaged", filepath.Base(statePath(target)))
	}
	return st, true, nil
}

// writeState replaces the target's state durably.
func writeState(target string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileAtomic(statePath(target), b)
}

// removeState removes the target's state durably.
func removeState(target string) error {
	if err := os.Remove(statePath(target)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("thethings: ota: %w", err)
	}
	return syncDir(filepath.Dir(target))
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, fsync'd, renamed over path, then the directory fsync'd. A
// crash leaves the old content or the new, whole.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("thethings: ota: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("thethings: ota: %w", err)
	}
	return syncDir(dir)
}

// syncDir makes the directory's entries (renames, links, removals)
// durable. Windows cannot open a directory for it; there it is skipped.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("thethings: ota: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("thethings: ota: sync %s: %w", filepath.Base(dir), err)
	}
	return nil
}

// fileSHA256 is the hex SHA-256 of a file's content.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Boot is called at the start of the program that target holds, before it
// does anything else. When the last update's trial run ended without
// Commit, Boot renames target+".previous" over target and returns
// rolledBack: the running process is the failed version, so the caller
// exits (for a supervisor to start the old version) or re-executes target.
// The first start after Apply is the trial run: Boot records it and
// returns false. Without an update on trial Boot only reads a small file.
// An error leaves the target as it was.
func Boot(target string) (rolledBack bool, err error) {
	st, ok, err := readState(target)
	if err != nil || !ok || st.Phase != phaseTrial {
		return false, err
	}
	sum, err := fileSHA256(target)
	if err != nil {
		return false, fmt.Errorf("thethings: ota: boot: %w", err)
	}
	switch {
	case sum != st.SHA256 && st.Boots == 0:
		// Apply was cut before its rename: the old version is in place.
		st.Phase, st.Error = phaseFailed, "update interrupted before it took effect"
		return false, writeState(target, st)
	case sum != st.SHA256:
		// A rollback was cut after its rename: finish recording it.
		st.Phase = phaseRolledBack
		return false, writeState(target, st)
	case st.Boots == 0:
		st.Boots = 1 // this is the trial run
		return false, writeState(target, st)
	}
	// The trial run did not commit: the previous version comes back.
	if _, err := os.Stat(previousPath(target)); err != nil {
		return false, fmt.Errorf("thethings: ota: boot: cannot roll back: %w", err)
	}
	if err := os.Rename(previousPath(target), target); err != nil {
		return false, fmt.Errorf("thethings: ota: boot: roll back: %w", err)
	}
	if err := syncDir(filepath.Dir(target)); err != nil {
		return true, err
	}
	st.Phase, st.Error = phaseRolledBack, "not committed by its trial run"
	return true, writeState(target, st)
}
