package ota

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/thethings-go/thethings/internal/fsys"
)

// Phases of the trial state; see the package documentation.
const (
	phaseTrial    = "trial"    // an update is in place or about to be, not committed
	phaseRejected = "rejected" // the update was rolled back: not applied again
	phaseIdle     = "idle"     // no update pending; only reports to send
)

// maxState bounds the state file read; maxUnsent bounds the reports it
// keeps (the oldest go first) and maxReportError their errors, so that it
// stays below even when JSON escapes every character (about 33 KiB).
const (
	maxState  = 64 << 10
	maxUnsent = 16
)

// state is the content of target+".ota-state".
type state struct {
	Phase  string   `json:"phase"`
	From   string   `json:"from,omitempty"`   // the version before the update
	To     string   `json:"to,omitempty"`     // the version of the update
	SHA256 string   `json:"sha256,omitempty"` // of the new target file
	Boots  int      `json:"boots"`            // starts of the new version since Apply
	Unsent []report `json:"unsent,omitempty"` // reports the platform does not have yet, oldest first
}

// queue keeps r to be sent later.
func (st *state) queue(r report) {
	st.Unsent = append(st.Unsent, r.short())
	if n := len(st.Unsent) - maxUnsent; n > 0 {
		st.Unsent = st.Unsent[n:]
	}
}

func statePath(target string) string    { return target + ".ota-state" }
func previousPath(target string) string { return target + ".previous" }

const errDamaged = "the update state file was damaged; an update on trial, if any, stays"

// readState returns the target's state; ok is false when there is none.
func readState(files fsys.FS, target string) (st state, ok bool, err error) {
	f, err := files.Open(statePath(target))
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
		// A damaged file (a failing card) must not stop Boot and Apply at
		// every start, forever: it reads as no update pending, with a
		// report saying so, and the next write replaces it.
		return state{Phase: phaseIdle, Unsent: []report{{State: StateFailed, Error: errDamaged}}}, true, nil
	}
	return st, true, nil
}

// writeState replaces the target's state durably; an idle state with no
// report to send is removed instead.
func writeState(files fsys.FS, target string, st state) error {
	if st.Phase == phaseIdle && len(st.Unsent) == 0 {
		return removeState(files, target)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileAtomic(files, statePath(target), b)
}

// removeState removes the target's state durably.
func removeState(files fsys.FS, target string) error {
	if err := files.Remove(statePath(target)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("thethings: ota: %w", err)
	}
	return syncDir(files, filepath.Dir(target))
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, fsync'd, renamed over path, then the directory fsync'd. A
// crash leaves the old content or the new, whole.
func writeFileAtomic(files fsys.FS, path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := files.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
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
		err = files.Rename(f.Name(), path)
	}
	if err != nil {
		files.Remove(f.Name())
		return fmt.Errorf("thethings: ota: %w", err)
	}
	return syncDir(files, dir)
}

func syncDir(files fsys.FS, dir string) error {
	if err := files.SyncDir(dir); err != nil {
		return fmt.Errorf("thethings: ota: %w", err)
	}
	return nil
}

// fileSHA256 is the hex SHA-256 of a file's content.
func fileSHA256(files fsys.FS, path string) (string, error) {
	f, err := files.Open(path)
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
//
// A program that may die before it reaches Boot (a panic in a package's
// init) can leave the call to what starts it instead: a launcher, or a
// systemd ExecStartPre command that calls Boot(target) before every start.
// One or the other, not both: every call counts a start.
func Boot(target string) (rolledBack bool, err error) {
	return boot(fsys.OS, target)
}

func boot(files fsys.FS, target string) (bool, error) {
	st, ok, err := readState(files, target)
	if err != nil || !ok || st.Phase != phaseTrial {
		return false, err
	}
	sum, err := fileSHA256(files, target)
	if err != nil {
		return false, fmt.Errorf("thethings: ota: boot: %w", err)
	}
	switch {
	case sum != st.SHA256 && st.Boots == 0:
		// Apply was cut before its rename: the old version is in place.
		st.queue(report{Version: st.To, State: StateFailed, Error: "update interrupted before it took effect"})
		return false, writeState(files, target, state{Phase: phaseIdle, Unsent: st.Unsent})
	case sum != st.SHA256:
		// A rollback was cut after its rename: finish recording it.
		return false, rejected(files, target, st, StateRolledBack, errNotCommitted)
	case st.Boots == 0:
		st.Boots = 1 // this is the trial run
		return false, writeState(files, target, st)
	}
	// The trial run did not commit: the previous version comes back.
	if _, err := files.Stat(previousPath(target)); errors.Is(err, fs.ErrNotExist) {
		// Nothing to go back to: this version stays, and the trial ends,
		// so that a newer version can be applied.
		return false, rejected(files, target, st, StateFailed, errNotCommitted+"; no previous version to roll back to")
	} else if err != nil {
		return false, fmt.Errorf("thethings: ota: boot: cannot roll back: %w", err)
	}
	if err := files.Rename(previousPath(target), target); err != nil {
		return false, fmt.Errorf("thethings: ota: boot: roll back: %w", err)
	}
	if err := syncDir(files, filepath.Dir(target)); err != nil {
		return true, err
	}
	return true, rejected(files, target, st, StateRolledBack, errNotCommitted)
}

const errNotCommitted = "not committed by its trial run"

// rejected ends the trial of st, which is not applied again, and keeps a
// report of it to send.
func rejected(files fsys.FS, target string, st state, reportState, why string) error {
	st.queue(report{Version: st.To, State: reportState, Error: why})
	return writeState(files, target, state{Phase: phaseRejected, To: st.To, Unsent: st.Unsent})
}
