package ota

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/fsys/crashfs"
	"github.com/thethings-go/thethings/thethingstest"
)

// The crash tests run Apply, Boot and Commit on a crashfs.FS, then cut the
// power after every operation, keeping any subset of the directory
// changes not yet fsync'd and every file's data as of its last fsync, the
// last write whole or torn (or kill -9 it, which keeps everything), and
// start the device on each state left: the target must run, a trial must
// end, the previous version must be there while a trial runs, and no
// report may be lost.

const crashDir = "/dev0"

var (
	crashTarget = crashDir + "/app"
	signKey     = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize)) // signs the bundles serve offers
	verifyKey   = signKey.Public().(ed25519.PublicKey)
	programs    = map[string]string{"program v0": "0", "program v1": "1", "program v2": "2", "program v3": "3"}
)

// noWrites fails every POST as a refused connection: reports are never
// sent, so all of them stay in the state, where the tests look for them.
type noWrites struct{ base *http.Transport }

func (n noWrites) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("refused")}
	}
	return n.base.RoundTrip(r)
}

const testToken = "ota-thing"

// serve starts a test server offering payload as firmware version v,
// signed by signKey, and returns it, a client of it that does not retry
// and whose report writes all fail (the benchmarks only download), and
// the firmware's id.
func serve(tb testing.TB, v string, payload io.Reader) (*thethingstest.Server, *thethings.Client, string) {
	tb.Helper()
	var bundle bytes.Buffer
	if err := Sign(&bundle, payload, v, signKey); err != nil {
		tb.Fatal(err)
	}
	srv := thethingstest.NewServer(tb, thethingstest.WithThingTokens(testToken))
	id := srv.AddFirmware(v, bundle.Bytes())
	tr := noWrites{http.DefaultTransport.(*http.Transport).Clone()}
	tb.Cleanup(tr.base.CloseIdleConnections)
	c, err := thethings.NewClient(testToken, thethings.WithBaseURL(srv.URL()),
		thethings.WithHTTPClient(&http.Client{Transport: tr}), thethings.WithRetry(thethings.NoRetries))
	if err != nil {
		tb.Fatal(err)
	}
	return srv, c, id
}

// device starts the program of an image again and again, as a supervisor
// does, and checks what each start finds.
type device struct {
	t      *testing.T
	c      *thethings.Client
	commit bool     // whether a version that runs commits
	old    string   // the version before the update
	keep   []report // reports that must never be lost
	depth  int      // how many power cuts deeper to go
	images *int     // images started on, counted
}

// check asserts what must hold in any image: the target runs, and while
// a new version is on trial the previous version is there, whole.
func (d *device) check(m *crashfs.FS, what string) {
	d.t.Helper()
	content, mode, ok := m.Content(crashTarget)
	if _, known := programs[content]; !ok || !known || mode&0o100 == 0 {
		d.t.Fatalf("%s: the target is %q (mode %o, exists %v): it does not run", what, content, mode, ok)
	}
	st, hasState, err := readState(m, crashTarget)
	if err != nil {
		d.t.Fatalf("%s: %v", what, err)
	}
	if hasState && st.Phase == phaseTrial && content == "program v"+st.To {
		prev, mode, ok := m.Content(previousPath(crashTarget))
		if _, known := programs[prev]; !ok || !known || mode&0o100 == 0 || prev == content {
			d.t.Fatalf("%s: version %s is on trial, and the previous version is %q (mode %o, exists %v)", what, st.To, prev, mode, ok)
		}
	}
	for _, r := range d.keep {
		if !slices.Contains(st.Unsent, r) {
			d.t.Fatalf("%s: the report %+v not sent yet is lost (state %+v)", what, r, st)
		}
	}
}

// run starts the device 5 times on m (each start: Boot, then, when not
// rolled back, the version runs and maybe commits), cutting the power
// during each Boot and Commit when depth allows, and checks that it
// settles: the trial ends, the same version runs at the last starts, a
// version that ran uncommitted was rolled back with a report, and the old
// one runs again.
func (d *device) run(m *crashfs.FS, what string) {
	d.t.Helper()
	d.check(m, what)
	*d.images++
	var ran []string
	for start := range 5 {
		rec := m.Clone()
		if d.depth > 0 {
			rec.Record()
		}
		rolledBack, err := boot(rec, crashTarget)
		if err != nil {
			d.t.Fatalf("%s, start %d: Boot: %v", what, start, err)
		}
		d.deeper(rec, what+", then during Boot")
		m = rec
		d.check(m, what)
		if rolledBack {
			continue // the caller exits or re-executes
		}
		content, _, _ := m.Content(crashTarget)
		ran = append(ran, programs[content])
		if d.commit {
			rec := m.Clone()
			if d.depth > 0 {
				rec.Record()
			}
			u := &Updater{c: d.c, pub: verifyKey, current: programs[content],
				cfg: config{target: crashTarget, reportKey: DefaultReportKey}, fs: rec}
			if err := u.Commit(); err != nil {
				d.t.Fatalf("%s, start %d: Commit: %v", what, start, err)
			}
			d.deeper(rec, what+", then during Commit")
			m = rec
			d.check(m, what)
		}
	}
	st, _, _ := readState(m, crashTarget)
	switch last := ran[len(ran)-1]; {
	case st.Phase == phaseTrial:
		d.t.Fatalf("%s: still on trial after 5 starts (ran %v)", what, ran)
	case ran[len(ran)-2] != last:
		d.t.Fatalf("%s: not settled after 5 starts: ran %v", what, ran)
	case d.commit && last != ran[0]:
		d.t.Fatalf("%s: the version that ran first and committed is gone: ran %v", what, ran)
	case !d.commit && last != d.old:
		d.t.Fatalf("%s: version %s, never committed, stays: ran %v, state %+v", what, last, ran, st)
	case !d.commit && ran[0] != last:
		rb := report{Version: ran[0], State: StateRolledBack, Error: errNotCommitted}
		if !slices.Contains(st.Unsent, rb) {
			d.t.Fatalf("%s: version %s was rolled back without a report: state %+v", what, ran[0], st)
		}
	}
}

// deeper runs the device on every image a power cut during rec's
// recording leaves.
func (d *device) deeper(rec *crashfs.FS, what string) {
	d.t.Helper()
	if d.depth == 0 {
		return
	}
	inner := *d
	inner.depth--
	for _, c := range crashfs.Distinct(rec.Crashes()) {
		inner.run(c.FS, what+": "+c.What)
	}
}

func TestCrashDuringApplyBootCommit(t *testing.T) {
	for name, tc := range map[string]struct {
		files   map[string]string
		state   *state
		offer   string
		noLinks bool
	}{
		"first update":       {files: map[string]string{crashTarget: "program v1"}, offer: "2"},
		"without hard links": {files: map[string]string{crashTarget: "program v1"}, offer: "2", noLinks: true},
		"after a rollback not reported": {
			files: map[string]string{crashTarget: "program v1", previousPath(crashTarget): "program v0"},
			state: &state{Phase: phaseRejected, To: "2", Unsent: []report{{Version: "2", State: StateRolledBack, Error: errNotCommitted}}},
			offer: "3",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, c, _ := serve(t, tc.offer, strings.NewReader("program v"+tc.offer))
			m := crashfs.New()
			for name, data := range tc.files {
				m.Put(name, data, 0o755)
			}
			m.NoLinks = tc.noLinks
			var keep []report
			if tc.state != nil {
				if err := writeState(m, crashTarget, *tc.state); err != nil {
					t.Fatal(err)
				}
				keep = tc.state.Unsent
			}
			u, err := NewUpdater(c, verifyKey, "1", WithTarget(crashTarget))
			if err != nil {
				t.Fatal(err)
			}
			u.fs = m.Record()
			before := m.Ops()
			applied, err := u.Apply(t.Context())
			if err != nil || !applied {
				t.Fatalf("Apply: %v, %v", applied, err)
			}
			images, started := crashfs.Distinct(m.Crashes()), 0
			for _, commit := range []bool{false, true} {
				d := &device{t: t, c: c, commit: commit, old: "1", keep: keep, depth: 1, images: &started}
				for _, img := range images {
					d.run(img.FS, "during Apply: "+img.What)
				}
			}
			t.Logf("%d operations, %d distinct power-cut images of Apply; the device started on %d images, those of Boot and Commit included",
				m.Ops()-before, len(images), started)
		})
	}
}

// An Apply whose file operation fails, whichever, returns the error and
// leaves the target whole, consistent with the state, and no temporary
// file (unless removing it was what failed).
func TestApplyFailingFileOperation(t *testing.T) {
	_, c, _ := serve(t, "2", strings.NewReader("program v2"))
	run := func(failAt int) (*crashfs.FS, bool, error) {
		m := crashfs.New().Put(crashTarget, "program v1", 0o755)
		m.FailAt = failAt
		u, err := NewUpdater(c, verifyKey, "1", WithTarget(crashTarget))
		if err != nil {
			t.Fatal(err)
		}
		u.fs = m
		applied, err := u.Apply(t.Context())
		return m, applied, err
	}
	m, applied, err := run(0)
	if err != nil || !applied {
		t.Fatalf("Apply: %v, %v", applied, err)
	}
	t.Logf("%d operations of Apply, each failed in turn", m.Ops())
	for i := 1; i <= m.Ops(); i++ {
		m, applied, err := run(i)
		what := fmt.Sprintf("operation %d of %d fails", i, m.Ops())
		if err == nil {
			if !applied {
				t.Fatalf("%s: Apply says nothing was applied, without an error", what)
			}
			continue // a failure Apply works around (a link, a report kept)
		}
		if applied {
			t.Fatalf("%s: Apply applied and failed: %v", what, err)
		}
		d := &device{t: t, c: c, old: "1", images: new(int)}
		d.check(m, what)
		content, _, _ := m.Content(crashTarget)
		st, hasState, _ := readState(m, crashTarget)
		if onTrial := hasState && st.Phase == phaseTrial; onTrial != (content == "program v2") {
			t.Fatalf("%s (%v): target %q, state %+v", what, err, content, st)
		}
		entries, _ := m.ReadDir(crashDir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") && !strings.Contains(err.Error(), "remove") {
				t.Fatalf("%s (%v): %s left behind", what, err, e.Name())
			}
		}
	}
}
