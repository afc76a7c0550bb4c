package ota

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/fsys"
	"github.com/thethings-go/thethings/internal/version"
)

// Defaults of an Updater.
const (
	DefaultMaxSize   = 256 << 20
	DefaultReportKey = "firmware"
	reportTimeout    = 10 * time.Second
	maxReportError   = 200
)

// Report states, the "state" field of the values under the report key.
const (
	StateApplied    = "applied"
	StateCommitted  = "committed"
	StateRolledBack = "rolled-back"
	StateFailed     = "failed"
)

// Option configures an Updater. An invalid option makes NewUpdater fail.
type Option func(*config) error

type config struct {
	target    string
	maxSize   int64
	reportKey string
}

// WithTarget sets the program file to update (default: os.Executable()).
func WithTarget(path string) Option {
	return func(c *config) error {
		if path == "" {
			return fmt.Errorf("thethings: ota: empty target path: %w", thethings.ErrInvalidOption)
		}
		c.target = path
		return nil
	}
}

// WithMaxSize sets the largest payload accepted (default 256 MiB).
func WithMaxSize(n int64) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("thethings: ota: max size %d must be positive: %w", n, thethings.ErrInvalidOption)
		}
		c.maxSize = n
		return nil
	}
}

// WithReportKey sets the key of the report values (default "firmware");
// "" sends none.
func WithReportKey(key string) Option {
	return func(c *config) error { c.reportKey = key; return nil }
}

// Updater updates one program file from the platform's firmwares. Its
// methods are meant for one goroutine of one process.
type Updater struct {
	c       *thethings.Client
	pub     ed25519.PublicKey
	current string
	cfg     config
	fs      fsys.FS
}

// NewUpdater returns an Updater for the program running version current,
// accepting bundles signed by pub's key. It does no I/O but resolve the
// default target.
func NewUpdater(c *thethings.Client, pub ed25519.PublicKey, current string, opts ...Option) (*Updater, error) {
	switch {
	case c == nil:
		return nil, fmt.Errorf("thethings: ota: nil client: %w", thethings.ErrInvalidOption)
	case len(pub) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("thethings: ota: public key of %d bytes, want %d: %w", len(pub), ed25519.PublicKeySize, thethings.ErrInvalidOption)
	case checkVersion(current) != nil:
		return nil, fmt.Errorf("thethings: ota: current version %.40q: %w", current, thethings.ErrInvalidOption)
	}
	cfg := config{maxSize: DefaultMaxSize, reportKey: DefaultReportKey}
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("thethings: ota: nil option: %w", thethings.ErrInvalidOption)
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.target == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("thethings: ota: target: %w", err)
		}
		cfg.target = exe
	}
	return &Updater{c: c, pub: pub, current: current, cfg: cfg, fs: fsys.OS}, nil
}

// Check asks the platform for its latest firmware and reports whether it
// is newer than the running version (and not a version rolled back
// before). It also sends the reports a previous run left: a rollback, an
// interrupted update, a report the platform did not get.
func (u *Updater) Check(ctx context.Context) (thethings.Firmware, bool, error) {
	fw, ok, err := u.c.LatestFirmware(ctx)
	if err != nil {
		return fw, false, err
	}
	st, hasState, err := u.flush(ctx)
	if err != nil {
		return fw, false, err
	}
	rejected := hasState && st.Phase == phaseRejected && version.Compare(fw.Version, st.To) == 0
	if !ok || rejected {
		return fw, false, nil
	}
	return fw, version.Compare(fw.Version, u.current) > 0, nil
}

// Apply installs the platform's latest firmware when it is newer: it
// downloads the bundle into a temporary file beside the target, verifying
// it while streaming (signature first, then size and SHA-256), fsyncs it,
// keeps the running file as target+".previous", renames the new one over
// the target, fsyncs the directory, and puts the update on trial. It
// returns true when the new version is in place: the caller restarts into
// it, and the new version calls Commit once it runs well (see Boot).
// Nothing that fails verification ever reaches the target, nor an
// executable for another processor than the target's, and a bundle
// whose signed version is not newer than the running one is refused
// (ErrVersion): an old bundle offered as the latest is no downgrade path.
// A version refused for a reason a new download cannot mend (signature,
// version, size, a payload that would not start) is not downloaded
// again; a newer one is. A download cut, or a payload damaged on the way
// (ErrDigest), is tried again at the next Apply.
//
// On Windows a running program cannot be replaced by a rename, and
// renaming it aside first would leave a moment with no program at the
// target: Apply refuses a target that is the running executable with an
// error matching errors.ErrUnsupported, before downloading. There, update
// a program file that a small launcher starts (WithTarget).
func (u *Updater) Apply(ctx context.Context) (bool, error) {
	if st, ok, err := readState(u.fs, u.cfg.target); err != nil {
		return false, err
	} else if ok && st.Phase == phaseTrial {
		return false, fmt.Errorf("thethings: ota: version %.40q is on trial; Commit it first: %w", st.To, ErrTrialPending)
	}
	if err := replaceable(u.cfg.target, runtime.GOOS); err != nil {
		return false, err
	}
	fw, newer, err := u.Check(ctx)
	if err != nil || !newer {
		return false, err
	}
	if err := u.apply(ctx, fw); err != nil {
		if refusedForGood(err) {
			u.reject(fw.Version)
		}
		u.send(ctx, report{Version: fw.Version, State: StateFailed, Error: err.Error()})
		return false, err
	}
	u.send(ctx, report{Version: fw.Version, State: StateApplied})
	return true, nil
}

// refusedForGood tells an error of a version's bundle that downloading
// it again cannot mend (unlike a cut download, or a payload damaged on
// the way).
func refusedForGood(err error) bool {
	return errors.Is(err, ErrSignature) || errors.Is(err, ErrVersion) || errors.Is(err, ErrTooLarge) || errors.Is(err, errCannotRun)
}

// reject records that version v is not to be downloaded again: 10,000
// devices do not fetch a bad bundle every interval. A newer version is.
func (u *Updater) reject(v string) {
	st, _, err := readState(u.fs, u.cfg.target)
	if err == nil {
		_ = writeState(u.fs, u.cfg.target, state{Phase: phaseRejected, To: v, Unsent: st.Unsent})
	}
}

// replaceable refuses, on Windows (goos), a target that is the running
// executable: see Apply.
func replaceable(target, goos string) error {
	if goos != "windows" {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	a, err1 := os.Stat(exe)
	b, err2 := os.Stat(target)
	if err1 == nil && err2 == nil && os.SameFile(a, b) {
		return fmt.Errorf("thethings: ota: on Windows the running program cannot be replaced; update a file a launcher starts (WithTarget): %w", errors.ErrUnsupported)
	}
	return nil
}

func (u *Updater) apply(ctx context.Context, fw thethings.Firmware) error {
	files, target := u.fs, u.cfg.target
	dir, base := filepath.Dir(target), filepath.Base(target)
	info, err := files.Stat(target)
	if err != nil {
		return fmt.Errorf("thethings: ota: target: %w", err)
	}
	for _, p := range []string{".new-", ".previous-", ".ota-state.tmp-"} {
		removeLeftovers(files, dir, "."+base+p)
	}
	tmp, err := files.CreateTemp(dir, "."+base+".new-*")
	if err != nil {
		return fmt.Errorf("thethings: ota: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			files.Remove(tmp.Name())
		}
	}()
	m, err := u.fetch(ctx, fw, tmp)
	if err != nil {
		return err
	}
	if err := closeSynced(tmp, info.Mode().Perm()); err != nil {
		return err
	}
	if err := checkFiles(files, target, tmp.Name()); err != nil {
		return err
	}
	if err := keepPrevious(files, target, info.Mode().Perm()); err != nil {
		return err
	}
	// The reports of the state it replaces stay in it.
	old, hadState, err := readState(files, target)
	if err != nil {
		return err
	}
	if !hadState {
		old.Phase = phaseIdle
	}
	st := state{Phase: phaseTrial, From: u.current, To: fw.Version, SHA256: m.SHA256, Unsent: old.Unsent}
	if err = writeState(files, target, st); err == nil {
		if err = files.Rename(tmp.Name(), target); err != nil {
			err = fmt.Errorf("thethings: ota: swap: %w", err)
		}
	}
	if err != nil {
		_ = writeState(files, target, old) // no trial: the old version stays
		return err
	}
	keep = true
	return syncDir(files, dir)
}

// checkFiles applies checkRuns to two files.
func checkFiles(files fsys.FS, target, payload string) error {
	t, err := files.Open(target)
	if err != nil {
		return fmt.Errorf("thethings: ota: target: %w", err)
	}
	defer t.Close()
	p, err := files.Open(payload)
	if err != nil {
		return fmt.Errorf("thethings: ota: %w", err)
	}
	defer p.Close()
	return checkRuns(t, p)
}

// closeSynced gives f the mode, fsyncs and closes it.
func closeSynced(f fsys.File, mode fs.FileMode) error {
	err := f.Chmod(mode)
	if err == nil {
		err = f.Sync()
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("thethings: ota: %w", err)
	}
	return nil
}

// fetch downloads the bundle of fw from the platform into a verifier
// that passes its payload to dst, refusing before its payload a bundle too
// large, signed as another version than fw's (which Check found newer
// than the running one), or signed as a version not newer than the
// running one: an old bundle offered as a new version is no downgrade
// path. A bundle that fails stops the download at once.
func (u *Updater) fetch(ctx context.Context, fw thethings.Firmware, dst io.Writer) (Manifest, error) {
	v, err := newVerifier(u.pub, dst, func(m Manifest) error {
		switch {
		case m.Size > u.cfg.maxSize:
			return fmt.Errorf("thethings: ota: payload of %d bytes, more than %d: %w", m.Size, u.cfg.maxSize, ErrTooLarge)
		case version.Compare(m.Version, fw.Version) != 0:
			return fmt.Errorf("thethings: ota: bundle signed as version %.40q, offered as %.40q: %w", m.Version, fw.Version, ErrVersion)
		case version.Compare(m.Version, u.current) <= 0:
			return fmt.Errorf("thethings: ota: bundle signed as version %.40q, not newer than the running %.40q: %w", m.Version, u.current, ErrVersion)
		}
		return nil
	})
	if err != nil {
		return Manifest{}, err
	}
	if _, err := u.c.DownloadFirmware(ctx, fw.ID, v, u.cfg.maxSize+maxBundleExtra); err != nil && v.err == nil {
		return v.m, err
	}
	return v.finish()
}

// keepPrevious makes target+".previous" the target's current content, by
// a hard link or else an fsync'd copy of the given mode, placed by a
// rename.
func keepPrevious(files fsys.FS, target string, mode fs.FileMode) error {
	dir := filepath.Dir(target)
	tmp := filepath.Join(dir, "."+filepath.Base(target)+".previous-link")
	files.Remove(tmp)
	if err := files.Link(target, tmp); err != nil {
		if tmp, err = copyFile(files, target, mode); err != nil {
			return err
		}
	}
	if err := files.Rename(tmp, previousPath(target)); err != nil {
		files.Remove(tmp)
		return fmt.Errorf("thethings: ota: keep previous: %w", err)
	}
	return syncDir(files, dir)
}

// copyFile copies src to an fsync'd temporary file beside it, for a file
// system without hard links.
func copyFile(files fsys.FS, src string, mode fs.FileMode) (string, error) {
	in, err := files.Open(src)
	if err != nil {
		return "", fmt.Errorf("thethings: ota: keep previous: %w", err)
	}
	defer in.Close()
	out, err := files.CreateTemp(filepath.Dir(src), "."+filepath.Base(src)+".previous-*")
	if err != nil {
		return "", fmt.Errorf("thethings: ota: keep previous: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		files.Remove(out.Name())
		return "", fmt.Errorf("thethings: ota: keep previous: %w", err)
	}
	if err := closeSynced(out, mode); err != nil {
		files.Remove(out.Name())
		return "", err
	}
	return out.Name(), nil
}

// removeLeftovers removes temporary files a killed Apply left in dir.
func removeLeftovers(files fsys.FS, dir, prefix string) {
	entries, _ := files.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			files.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Commit ends the trial of the running update: it stays. Without an
// update on trial, or when the update on trial is not the version this
// Updater runs (the old version, before it restarted into the new one),
// it does nothing: only the new version, running, can vouch for itself.
func (u *Updater) Commit() error {
	st, ok, err := readState(u.fs, u.cfg.target)
	if err != nil || !ok || st.Phase != phaseTrial || version.Compare(st.To, u.current) != 0 {
		return err
	}
	if err := writeState(u.fs, u.cfg.target, state{Phase: phaseIdle, Unsent: st.Unsent}); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), reportTimeout)
	defer cancel()
	u.send(ctx, report{Version: st.To, State: StateCommitted})
	return nil
}

// report is the value written under the report key.
type report struct {
	Version string `json:"version"`
	State   string `json:"state"`
	Error   string `json:"error,omitempty"`
}

// short is r with its error cut to maxReportError bytes.
func (r report) short() report {
	if len(r.Error) > maxReportError {
		r.Error = strings.ToValidUTF8(r.Error[:maxReportError], "")
	}
	return r
}

// send writes r after the reports not sent before; when it cannot, r
// joins them in the state file, for the next Check.
func (u *Updater) send(ctx context.Context, r report) {
	st, ok, err := u.flush(ctx)
	if err != nil {
		return // the state cannot be read: nowhere to keep r either
	}
	r = r.short()
	if len(st.Unsent) == 0 && u.write(ctx, r) {
		return
	}
	if !ok {
		st = state{Phase: phaseIdle}
	}
	st.queue(r)
	_ = writeState(u.fs, u.cfg.target, st)
}

// flush sends the reports the state keeps, in order, and returns the
// state without those the platform got.
func (u *Updater) flush(ctx context.Context) (state, bool, error) {
	st, ok, err := readState(u.fs, u.cfg.target)
	if err != nil || len(st.Unsent) == 0 {
		return st, ok, err
	}
	n := 0
	for n < len(st.Unsent) && u.write(ctx, st.Unsent[n]) {
		n++
	}
	if n == 0 {
		return st, ok, nil
	}
	st.Unsent = slices.Clone(st.Unsent[n:])
	if err := writeState(u.fs, u.cfg.target, st); err != nil {
		return st, ok, err
	}
	return st, st.Phase != phaseIdle || len(st.Unsent) > 0, nil
}

// write sends one report; it reports false when the report was certainly
// not written, to be sent again later.
func (u *Updater) write(ctx context.Context, r report) bool {
	if u.cfg.reportKey == "" {
		return true
	}
	err := u.c.Write(ctx, []thethings.Value{{Key: u.cfg.reportKey, Value: r}})
	var we *thethings.WriteError
	return err == nil || errors.As(err, &we) && we.Unknown
}
