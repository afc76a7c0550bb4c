package ota_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
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
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// The end-to-end tests (e2e_test.go) update real programs: testdata/app
// built as version 1 and version 2, once for all tests.
var builds struct {
	once   sync.Once
	dir    string
	v1, v2 []byte
	err    error
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
	ctx := context.Background()
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
	ctx := context.Background()
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
			applied, err := f.updater(t, "1", tc.opts...).Apply(context.Background())
			require.ErrorIs(t, err, tc.want)
			assert.False(t, applied)
			assert.Equal(t, "program v1", f.content(t), "the target is untouched")
			assert.Equal(t, []string{"app"}, f.dirNames(t), "nothing left beside it")
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
	applied, err := f.updater(t, "1").Apply(context.Background())
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
	ctx := context.Background()
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
