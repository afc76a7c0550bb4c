package ota_test

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/ota"
	"github.com/thethings-go/thethings/thethingstest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

const token = "ota-test-thing"

// fixture is a target file beside which updates happen, and a test server.
type fixture struct {
	srv    *thethingstest.Server
	c      *thethings.Client
	target string
}

func newFixture(t *testing.T, opts ...thethingstest.Option) *fixture {
	t.Helper()
	srv := thethingstest.NewServer(t, append([]thethingstest.Option{thethingstest.WithThingTokens(token)}, opts...)...)
	c, err := thethings.NewClient(token, thethings.WithBaseURL(srv.URL()),
		thethings.WithRetry(thethings.RetryPolicy{MinWait: 1e6, MaxWait: 5e6}))
	require.NoError(t, err)
	target := filepath.Join(t.TempDir(), "app")
	require.NoError(t, os.WriteFile(target, []byte("program v1"), 0o755))
	return &fixture{srv: srv, c: c, target: target}
}

func (f *fixture) updater(t *testing.T, current string, opts ...ota.Option) *ota.Updater {
	t.Helper()
	u, err := ota.NewUpdater(f.c, testPub, current, append([]ota.Option{ota.WithTarget(f.target)}, opts...)...)
	require.NoError(t, err)
	return u
}

func (f *fixture) content(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(f.target)
	require.NoError(t, err)
	return string(b)
}

// reports returns the states reported, oldest first.
func (f *fixture) reports(t *testing.T) []string {
	t.Helper()
	var out []string
	recs := f.srv.Stored(token, "firmware")
	for i := len(recs) - 1; i >= 0; i-- {
		var r struct{ Version, State, Error string }
		require.NoError(t, json.Unmarshal(recs[i].Value, &r))
		out = append(out, r.Version+":"+r.State)
	}
	return out
}

// dirNames lists the target's directory.
func (f *fixture) dirNames(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(f.target))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestUpdaterApplyCommit(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	u := f.updater(t, "1")
	applied, err := u.Apply(ctx)
	require.NoError(t, err)
	assert.False(t, applied, "nothing offered")

	f.srv.AddFirmware("2", sign(t, []byte("program v2"), "2"))
	fw, newer, err := u.Check(ctx)
	require.NoError(t, err)
	assert.True(t, newer)
	assert.Equal(t, "2", fw.Version)
	applied, err = u.Apply(ctx)
	require.NoError(t, err)
	require.True(t, applied)
	assert.Equal(t, "program v2", f.content(t))
	prev, err := os.ReadFile(f.target + ".previous")
	require.NoError(t, err)
	assert.Equal(t, "program v1", string(prev))
	info, err := os.Stat(f.target)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), info.Mode().Perm(), "the new program keeps the target's mode")

	_, err = u.Apply(ctx)
	require.ErrorIs(t, err, ota.ErrTrialPending)

	// The new version starts: its trial run.
	rolledBack, err := ota.Boot(f.target)
	require.NoError(t, err)
	assert.False(t, rolledBack)
	u2 := f.updater(t, "2")
	require.NoError(t, u2.Commit())
	rolledBack, err = ota.Boot(f.target)
	require.NoError(t, err)
	assert.False(t, rolledBack, "committed: stays")
	assert.Equal(t, "program v2", f.content(t))
	assert.Equal(t, []string{"2:applied", "2:committed"}, f.reports(t))
	assert.ElementsMatch(t, []string{"app", "app.previous"}, f.dirNames(t), "no temporary file left")
}

func TestUpdaterRollsBackUncommittedTrial(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.srv.AddFirmware("2", sign(t, []byte("program v2"), "2"))
	applied, err := f.updater(t, "1").Apply(ctx)
	require.NoError(t, err)
	require.True(t, applied)

	rolledBack, err := ota.Boot(f.target) // trial run, which never commits
	require.NoError(t, err)
	require.False(t, rolledBack)
	rolledBack, err = ota.Boot(f.target) // the next start
	require.NoError(t, err)
	assert.True(t, rolledBack)
	assert.Equal(t, "program v1", f.content(t))
	rolledBack, err = ota.Boot(f.target)
	require.NoError(t, err)
	assert.False(t, rolledBack, "once")

	// The old version reports the rollback and does not take 2 again.
	u := f.updater(t, "1")
	_, newer, err := u.Check(ctx)
	require.NoError(t, err)
	assert.False(t, newer, "a rolled-back version is not applied again")
	applied, err = u.Apply(ctx)
	require.NoError(t, err)
	assert.False(t, applied)
	assert.Equal(t, []string{"2:applied", "2:rolled-back"}, f.reports(t))

	// A newer one is.
	f.srv.AddFirmware("3", sign(t, []byte("program v3"), "3"))
	applied, err = u.Apply(ctx)
	require.NoError(t, err)
	assert.True(t, applied)
	assert.Equal(t, "program v3", f.content(t))
}

func TestUpdaterRefusesBadBundles(t *testing.T) {
	good := sign(t, bytes.Repeat([]byte("v2"), 5000), "2")
	_, otherPriv, err := ota.GenerateKey()
	require.NoError(t, err)
	var otherKey bytes.Buffer
	require.NoError(t, ota.Sign(&otherKey, bytes.NewReader([]byte("evil")), "2", otherPriv))
	tampered := bytes.Clone(good)
	tampered[len(tampered)-10] ^= 0xff
	n := int(binary.BigEndian.Uint32(good[5:9])) // the manifest's length
	badManifest := bytes.Clone(good)
	badManifest[9+n-2] ^= 0x01
	badSignature := bytes.Clone(good)
	badSignature[9+n+10] ^= 0x01
	for name, tc := range map[string]struct {
		bundle []byte
		opts   []ota.Option
		want   error
	}{
		"tampered payload":   {bundle: tampered, want: ota.ErrDigest},
		"tampered manifest":  {bundle: badManifest, want: ota.ErrSignature},
		"tampered signature": {bundle: badSignature, want: ota.ErrSignature},
		"truncated":          {bundle: good[:len(good)-1], want: ota.ErrInvalidBundle},
		"wrong key":          {bundle: otherKey.Bytes(), want: ota.ErrSignature},
		"oversize":           {bundle: good, opts: []ota.Option{ota.WithMaxSize(9999)}, want: ota.ErrTooLarge},
		"other version":      {bundle: sign(t, []byte("x"), "3"), want: ota.ErrVersion},
		"old bundle as new":  {bundle: sign(t, []byte("x"), "1"), want: ota.ErrVersion},
		"unsigned":           {bundle: []byte("#!/bin/sh\necho pwned\n"), want: ota.ErrInvalidBundle},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.srv.AddFirmware("2", tc.bundle)
			applied, err := f.updater(t, "1", tc.opts...).Apply(t.Context())
			require.ErrorIs(t, err, tc.want)
			assert.False(t, applied)
			assert.Equal(t, "program v1", f.content(t), "the target is untouched")
			assert.Subset(t, []string{"app", "app.ota-state"}, f.dirNames(t), "nothing left beside it but a note of the refusal")
			rolledBack, err := ota.Boot(f.target)
			require.NoError(t, err)
			assert.False(t, rolledBack)
			assert.Equal(t, []string{"2:failed"}, f.reports(t))
		})
	}
}

func TestUpdaterResumesCutDownload(t *testing.T) {
	f := newFixture(t, thethingstest.WithFirmwareFaults(thethingstest.FirmwareFaults{CutAfter: 4000}))
	payload := bytes.Repeat([]byte("v2 "), 5000)
	f.srv.AddFirmware("2", sign(t, payload, "2"))
	applied, err := f.updater(t, "1").Apply(t.Context())
	require.NoError(t, err)
	assert.True(t, applied)
	assert.Equal(t, string(payload), f.content(t))
	assert.Greater(t, f.srv.Requests(thethingstest.RouteFirmwareDownload), 3)
}

func TestNewUpdaterRefusesBadOptions(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		c    *thethings.Client
		pub  []byte
		cur  string
		opts []ota.Option
	}{
		{nil, testPub, "1", nil},
		{f.c, testPub[:5], "1", nil},
		{f.c, testPub, "", nil},
		{f.c, testPub, "1", []ota.Option{ota.WithMaxSize(0)}},
		{f.c, testPub, "1", []ota.Option{ota.WithTarget("")}},
		{f.c, testPub, "1", []ota.Option{nil}},
	} {
		_, err := ota.NewUpdater(tc.c, tc.pub, tc.cur, tc.opts...)
		assert.ErrorIs(t, err, thethings.ErrInvalidOption)
	}
}

// failingWrites is a transport whose POSTs fail to connect while fail is set.
type failingWrites struct {
	fail atomic.Bool
	base *http.Transport
}

func (f *failingWrites) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.fail.Load() && r.Method == http.MethodPost {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("no route")}
	}
	return f.base.RoundTrip(r)
}

// A rollback report the platform did not get stays on disk until it does;
// meanwhile the rolled-back version is not taken again.
func TestUpdaterKeepsRollbackReportUntilSent(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.srv.AddFirmware("2", sign(t, []byte("program v2"), "2"))
	applied, err := f.updater(t, "1").Apply(ctx)
	require.NoError(t, err)
	require.True(t, applied)
	for range 2 { // the trial run, then the start that rolls back
		_, err := ota.Boot(f.target)
		require.NoError(t, err)
	}
	require.Equal(t, "program v1", f.content(t))

	tr := &failingWrites{base: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(tr.base.CloseIdleConnections)
	tr.fail.Store(true)
	c, err := thethings.NewClient(token, thethings.WithBaseURL(f.srv.URL()),
		thethings.WithHTTPClient(&http.Client{Transport: tr}), thethings.WithRetry(thethings.NoRetries))
	require.NoError(t, err)
	u, err := ota.NewUpdater(c, testPub, "1", ota.WithTarget(f.target))
	require.NoError(t, err)
	_, newer, err := u.Check(ctx)
	require.NoError(t, err)
	assert.False(t, newer, "not taken again, reported or not")
	assert.Equal(t, []string{"2:applied"}, f.reports(t))

	// A new process, and the platform reachable: the report goes out once.
	tr.fail.Store(false)
	u, err = ota.NewUpdater(c, testPub, "1", ota.WithTarget(f.target))
	require.NoError(t, err)
	for range 2 {
		_, newer, err = u.Check(ctx)
		require.NoError(t, err)
		assert.False(t, newer)
	}
	assert.Equal(t, []string{"2:applied", "2:rolled-back"}, f.reports(t))
}

// The old version, still running after Apply, cannot commit the new one
// it never ran: only the new version vouches for itself.
func TestUpdaterCommitByOldVersionKeepsTrial(t *testing.T) {
	f := newFixture(t)
	f.srv.AddFirmware("2", sign(t, []byte("program v2"), "2"))
	u := f.updater(t, "1")
	applied, err := u.Apply(t.Context())
	require.NoError(t, err)
	require.True(t, applied)
	require.NoError(t, u.Commit(), "version 1 calls Commit, as a health signal, before it restarts")
	for _, want := range []bool{false, true} { // the trial run, then the start that rolls back
		rolledBack, err := ota.Boot(f.target)
		require.NoError(t, err)
		assert.Equal(t, want, rolledBack)
	}
	assert.Equal(t, "program v1", f.content(t))
}

// A trial whose previous version is gone (removed by hand, a file system
// that lost it) ends: the new version stays, Boot does not fail at every
// start, and a newer version can still be applied.
func TestBootWithoutPreviousEndsTrial(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.srv.AddFirmware("2", sign(t, []byte("program v2"), "2"))
	applied, err := f.updater(t, "1").Apply(ctx)
	require.NoError(t, err)
	require.True(t, applied)
	require.NoError(t, os.Remove(f.target+".previous"))
	for range 3 {
		rolledBack, err := ota.Boot(f.target)
		require.NoError(t, err)
		assert.False(t, rolledBack)
	}
	assert.Equal(t, "program v2", f.content(t))
	f.srv.AddFirmware("3", sign(t, []byte("program v3"), "3"))
	applied, err = f.updater(t, "2").Apply(ctx)
	require.NoError(t, err)
	assert.True(t, applied, "no trial left pending forever")
	assert.Equal(t, "program v3", f.content(t))
	assert.Equal(t, []string{"2:applied", "2:failed", "3:applied"}, f.reports(t))
}

// Apply compares the signed version with the running one itself, not only
// through the version the platform lists: versions of mixed forms do not
// order transitively ("v1.0.0" is newer than "1.0.0-" as text, "1.0.0"
// equal to "v1.0.0" as semver, older than "1.0.0-" as text).
func TestUpdaterRefusesSignedVersionNotNewer(t *testing.T) {
	f := newFixture(t)
	f.srv.AddFirmware("v1.0.0", sign(t, []byte("program x"), "1.0.0"))
	applied, err := f.updater(t, "1.0.0-").Apply(t.Context())
	require.ErrorIs(t, err, ota.ErrVersion)
	assert.False(t, applied)
	assert.Equal(t, "program v1", f.content(t))
}

// No error of Apply and no report holds the thing's token.
func TestUpdaterErrorsHoldNoToken(t *testing.T) {
	f := newFixture(t)
	f.srv.AddFirmware("2", sign(t, []byte("x"), "3"))
	_, err := f.updater(t, "1").Apply(t.Context())
	require.Error(t, err)
	assert.NotContains(t, err.Error(), token)
	for _, r := range f.srv.Stored(token, "firmware") {
		assert.NotContains(t, string(r.Value), token)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	c, err := thethings.NewClient(token, thethings.WithBaseURL("http://"+addr+"/v2/"), thethings.WithRetry(thethings.NoRetries))
	require.NoError(t, err)
	u, err := ota.NewUpdater(c, testPub, "1", ota.WithTarget(f.target))
	require.NoError(t, err)
	_, err = u.Apply(t.Context())
	require.Error(t, err)
	assert.NotContains(t, err.Error(), token)
}

// A rollback report not sent yet survives a newer update applied
// meanwhile, and so do the reports of that update, through its restart:
// once the platform is reachable, it gets them all, in order.
func TestUpdaterReportsSurviveNewerUpdate(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.srv.AddFirmware("2", sign(t, []byte("program v2"), "2"))
	applied, err := f.updater(t, "1").Apply(ctx)
	require.NoError(t, err)
	require.True(t, applied)
	for range 2 { // the trial run, then the start that rolls back
		_, err := ota.Boot(f.target)
		require.NoError(t, err)
	}

	tr := &failingWrites{base: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(tr.base.CloseIdleConnections)
	tr.fail.Store(true)
	c, err := thethings.NewClient(token, thethings.WithBaseURL(f.srv.URL()),
		thethings.WithHTTPClient(&http.Client{Transport: tr}), thethings.WithRetry(thethings.NoRetries))
	require.NoError(t, err)
	f.srv.AddFirmware("3", sign(t, []byte("program v3"), "3"))
	u, err := ota.NewUpdater(c, testPub, "1", ota.WithTarget(f.target))
	require.NoError(t, err)
	applied, err = u.Apply(ctx)
	require.NoError(t, err)
	require.True(t, applied, "version 3 is newer than the rolled-back 2")

	// Version 3 starts, on trial, and commits, still unable to report.
	_, err = ota.Boot(f.target)
	require.NoError(t, err)
	u, err = ota.NewUpdater(c, testPub, "3", ota.WithTarget(f.target))
	require.NoError(t, err)
	require.NoError(t, u.Commit())
	assert.Equal(t, []string{"2:applied"}, f.reports(t))

	tr.fail.Store(false)
	_, newer, err := u.Check(ctx)
	require.NoError(t, err)
	assert.False(t, newer)
	assert.Equal(t, []string{"2:applied", "2:rolled-back", "3:applied", "3:committed"}, f.reports(t))
	assert.ElementsMatch(t, []string{"app", "app.previous"}, f.dirNames(t), "nothing left to send: no state")
}

// elfProgram is the smallest ELF file debug/elf reads: a 64-bit
// little-endian header for the machine, then text.
func elfProgram(machine elf.Machine, text string) []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF\x02\x01\x01")
	binary.LittleEndian.PutUint16(h[16:], uint16(elf.ET_EXEC))
	binary.LittleEndian.PutUint16(h[18:], uint16(machine))
	binary.LittleEndian.PutUint32(h[20:], 1)
	binary.LittleEndian.PutUint16(h[52:], 64)
	return append(h, text...)
}

// A signed payload built for another processor, or no executable at all,
// would leave a device unable to start (the new program never reaches
// Boot, so nothing rolls it back): Apply refuses it. One for the same
// processor is applied.
func TestUpdaterRefusesPayloadThatCannotRun(t *testing.T) {
	for name, tc := range map[string]struct {
		payload []byte
		want    error
	}{
		"other processor": {payload: elfProgram(elf.EM_AARCH64, "v2"), want: ota.ErrInvalidBundle},
		"no executable":   {payload: []byte("PK\x03\x04 an archive uploaded by mistake"), want: ota.ErrInvalidBundle},
		"same processor":  {payload: elfProgram(elf.EM_X86_64, "v2")},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			program := elfProgram(elf.EM_X86_64, "v1")
			require.NoError(t, os.WriteFile(f.target, program, 0o755))
			f.srv.AddFirmware("2", sign(t, tc.payload, "2"))
			applied, err := f.updater(t, "1").Apply(t.Context())
			if tc.want == nil {
				require.NoError(t, err)
				assert.True(t, applied)
				assert.Equal(t, string(tc.payload), f.content(t))
				return
			}
			require.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), "would not start")
			assert.False(t, applied)
			assert.Equal(t, string(program), f.content(t), "the target is untouched")
			assert.Subset(t, []string{"app", "app.ota-state"}, f.dirNames(t), "nothing left beside it but a note of the refusal")
		})
	}
}

// A bundle refused for good is not downloaded again at every check (a
// fleet would fetch it all day); a newer version is. One damaged on the
// way is downloaded again.
func TestUpdaterDoesNotRefetchRefusedBundle(t *testing.T) {
	_, otherPriv, err := ota.GenerateKey()
	require.NoError(t, err)
	var otherKey bytes.Buffer
	require.NoError(t, ota.Sign(&otherKey, bytes.NewReader([]byte("program v2")), "2", otherPriv))
	damaged := sign(t, []byte("program v2"), "2")
	damaged[len(damaged)-1] ^= 0xff
	for name, tc := range map[string]struct {
		bundle    []byte
		want      error
		downloads int
	}{
		"wrong key":         {bundle: otherKey.Bytes(), want: ota.ErrSignature, downloads: 1},
		"old bundle as new": {bundle: sign(t, []byte("program v1"), "1"), want: ota.ErrVersion, downloads: 1},
		"damaged payload":   {bundle: damaged, want: ota.ErrDigest, downloads: 2},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			ctx := t.Context()
			f.srv.AddFirmware("2", tc.bundle)
			u := f.updater(t, "1")
			_, err := u.Apply(ctx)
			require.ErrorIs(t, err, tc.want)
			applied, err := u.Apply(ctx)
			assert.False(t, applied)
			if tc.downloads == 1 {
				require.NoError(t, err, "refused for good: not tried again")
				assert.Equal(t, []string{"2:failed"}, f.reports(t))
			} else {
				require.ErrorIs(t, err, tc.want)
			}
			assert.Equal(t, tc.downloads, f.srv.Requests(thethingstest.RouteFirmwareDownload))

			f.srv.AddFirmware("3", sign(t, []byte("program v3"), "3"))
			applied, err = u.Apply(ctx)
			require.NoError(t, err)
			assert.True(t, applied, "a newer version is applied")
			assert.Equal(t, "program v3", f.content(t))
		})
	}
}

// A damaged state file (a failing card) does not stop Boot and Apply at
// every start, forever: it is reported, and replaced.
func TestDamagedStateIsReportedAndReplaced(t *testing.T) {
	f := newFixture(t)
	require.NoError(t, os.WriteFile(f.target+".ota-state", []byte("{\"phase\":\"tri\x00\x00\x00"), 0o644))
	rolledBack, err := ota.Boot(f.target)
	require.NoError(t, err)
	assert.False(t, rolledBack)
	f.srv.AddFirmware("2", sign(t, []byte("program v2"), "2"))
	applied, err := f.updater(t, "1").Apply(t.Context())
	require.NoError(t, err)
	assert.True(t, applied)
	assert.Equal(t, []string{":failed", "2:applied"}, f.reports(t))
	for _, want := range []bool{false, true} { // the new state works: a trial, then a rollback
		rolledBack, err := ota.Boot(f.target)
		require.NoError(t, err)
		assert.Equal(t, want, rolledBack)
	}
}
