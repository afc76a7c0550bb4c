package ota

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/thethings-go/thethings"
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
	pending []report // reports not sent yet
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
	return &Updater{c: c, pub: pub, current: current, cfg: cfg}, nil
}

// Check asks the platform for its latest firmware and reports whether it
// is newer than the running version (and not a version rolled back
// before). It also sends the reports a previous run left: a rollback, an
// interrupted update.
func (u *Updater) Check(ctx context.Context) (thethings.Firmware, bool, error) {
	fw, ok, err := u.c.LatestFirmware(ctx)
	if err != nil {
		return fw, false, err
	}
	st, hasState, err := readState(u.cfg.target)
	if err != nil {
		return fw, false, err
	}
	if hasState && (st.Phase == phaseRolledBack || st.Phase == phaseFailed) {
		// The state keeps the report until the platform has it.
		if u.write(ctx, report{Version: st.To, State: st.Phase, Error: st.Error}) {
			next := state{Phase: phaseRejected, To: st.To}
			if st.Phase == phaseFailed {
				err = removeState(u.cfg.target)
			} else {
				err = writeState(u.cfg.target, next)
			}
			if err != nil {
				return fw, false, err
			}
			st = next
		}
	}
	u.flush(ctx)
	rejected := hasState && (st.Phase == phaseRejected || st.Phase == phaseRolledBack)
	if !ok || rejected && version.Compare(fw.Version, st.To) == 0 {
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
// Nothing that fails verification ever reaches the target.
func (u *Updater) Apply(ctx context.Context) (bool, error) {
	if st, ok, err := readState(u.cfg.target); err != nil {
		return false, err
	} else if ok && st.Phase == phaseTrial {
		return false, fmt.Errorf("thethings: ota: version %.40q is on trial; Commit it first: %w", st.To, ErrTrialPending)
	}
	fw, newer, err := u.Check(ctx)
	if err != nil || !newer {
		return false, err
	}
	if err := u.apply(ctx, fw); err != nil {
		u.send(ctx, report{Version: fw.Version, State: StateFailed, Error: err.Error()})
		return false, err
	}
	u.send(ctx, report{Version: fw.Version, State: StateApplied})
	return true, nil
}

func (u *Updater) apply(ctx context.Context, fw thethings.Firmware) error {
	target := u.cfg.target
	dir, base := filepath.Dir(target), filepath.Base(target)
	info, err := os.Stat(target)
	if err != nil {
		return fmt.Errorf("thethings: ota: target: %w", err)
	}
	removeLeftovers(dir, "."+base+".new-")
	removeLeftovers(dir, "."+filepath.Base(statePath(target))+".tmp-")
	tmp, err := os.CreateTemp(dir, "."+base+".new-*")
	if err != nil {
		return fmt.Errorf("thethings: ota: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	m, err := u.fetch(ctx, fw, tmp)
	if err != nil {
		return err
	}
	if err := tmp.Chmod(info.Mode().Perm()); err != nil {
		return fmt.Errorf("thethings: ota: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("thethings: ota: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("thethings: ota: %w", err)
	}
	if err := keepPrevious(target); err != nil {
		return err
	}
	st := state{Phase: phaseTrial, From: u.current, To: fw.Version, SHA256: m.SHA256}
	if err := writeState(target, st); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		_ = removeState(target)
		return fmt.Errorf("thethings: ota: swap: %w", err)
	}
	keep = true
	return syncDir(dir)
}

// fetch downloads the bundle of fw from the platform into a verifier
// that passes its payload to dst, refusing before its payload a bundle too
// large or signed as another version than fw's (which Check found newer
// than the running one): an old bundle offered as a new version is no
// downgrade path. A bundle that fails stops the download at once.
func (u *Updater) fetch(ctx context.Context, fw thethings.Firmware, dst io.Writer) (Manifest, error) {
	v, err := newVerifier(u.pub, dst, func(m Manifest) error {
		switch {
		case m.Size > u.cfg.maxSize:
			return fmt.Errorf("thethings: ota: payload of %d bytes, more than %d: %w", m.Size, u.cfg.maxSize, ErrTooLarge)
		case version.Compare(m.Version, fw.Version) != 0:
			return fmt.Errorf("thethings: ota: bundle signed as version %.40q, offered as %.40q: %w", m.Version, fw.Version, ErrVersion)
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
// a hard link or else an fsync'd copy, placed by a rename.
func keepPrevious(target string) error {
	dir := filepath.Dir(target)
	tmp := filepath.Join(dir, "."+filepath.Base(target)+".previous-tmp")
	os.Remove(tmp)
	if err := os.Link(target, tmp); err != nil {
		if err := copyFile(target, tmp); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	if err := os.Rename(tmp, previousPath(target)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("thethings: ota: keep previous: %w", err)
	}
	return syncDir(dir)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("thethings: ota: keep previous: %w", err)
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return fmt.Errorf("thethings: ota: keep previous: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return fmt.Errorf("thethings: ota: keep previous: %w", err)
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if e := out.Close(); err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("thethings: ota: keep previous: %w", err)
	}
	return nil
}

// removeLeftovers removes temporary files a killed Apply left in dir.
func removeLeftovers(dir, prefix string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Commit ends the trial of the running update: it stays. Without an
// update on trial it does nothing.
func (u *Updater) Commit() error {
	st, ok, err := readState(u.cfg.target)
	if err != nil || !ok || st.Phase != phaseTrial {
		return err
	}
	if err := removeState(u.cfg.target); err != nil {
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

// send writes r, and the reports not sent before; what fails stays
// pending for the next Check.
func (u *Updater) send(ctx context.Context, r report) {
	u.pending = append(u.pending, r)
	u.flush(ctx)
}

func (u *Updater) flush(ctx context.Context) {
	for len(u.pending) > 0 && u.write(ctx, u.pending[0]) {
		u.pending = u.pending[1:]
	}
}

// write sends one report; it reports false when the report was certainly
// not written, to be sent again later.
func (u *Updater) write(ctx context.Context, r report) bool {
	if u.cfg.reportKey == "" {
		return true
	}
	if len(r.Error) > maxReportError {
		r.Error = strings.ToValidUTF8(r.Error[:maxReportError], "")
	}
	err := u.c.Write(ctx, []thethings.Value{{Key: u.cfg.reportKey, Value: r}})
	var we *thethings.WriteError
	return err == nil || errors.As(err, &we) && we.Unknown
}
