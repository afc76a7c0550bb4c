//go:build unix

package ota_test

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings/thethingstest"
)

// device is a directory holding the program, and the environment it runs
// with.
type device struct {
	t      *testing.T
	target string
	env    []string
}

func (d *device) command(args ...string) *exec.Cmd {
	cmd := exec.Command(d.target, args...)
	cmd.Env = d.env
	return cmd
}

// run runs the program and returns its output; failed tells whether it
// exited with an error.
func (d *device) run(args ...string) (out string, failed bool) {
	d.t.Helper()
	b, err := d.command(args...).CombinedOutput()
	return strings.TrimSpace(string(b)), err != nil
}

func (d *device) mustRun(args ...string) string {
	d.t.Helper()
	out, failed := d.run(args...)
	require.False(d.t, failed, "app %s: %s", args, out)
	return out
}

// TestE2E updates real programs: testdata/app built as version 1 and
// version 2.
func TestE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two programs")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the test programs")
	}
	dir := t.TempDir()
	var v1, v2 []byte
	for v, dst := range map[string]*[]byte{"1": &v1, "2": &v2} {
		out := filepath.Join(dir, "app"+v)
		cmd := exec.Command(goTool, "build", "-o", out, "-ldflags", "-X main.version="+v, "./testdata/app")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build version %s: %v: %s", v, err, b)
		}
		if *dst, err = os.ReadFile(out); err != nil {
			t.Fatal(err)
		}
	}
	// newDevice is a directory holding v1, run with srv's address.
	newDevice := func(t *testing.T, srv *thethingstest.Server) *device {
		t.Helper()
		target := filepath.Join(t.TempDir(), "app")
		require.NoError(t, os.WriteFile(target, v1, 0o755))
		return &device{t: t, target: target, env: append(os.Environ(),
			"THETHINGS_BASE_URL="+srv.URL(), "THETHINGS_TOKEN="+token,
			"OTA_PUBLIC_KEY="+base64.StdEncoding.EncodeToString(testPub))}
	}

	t.Run("UpdateCommitRollback", func(t *testing.T) {
		srv := newFixture(t).srv
		srv.AddFirmware("2", sign(t, v2, "2"))

		// v1 updates to v2, which commits after its first start.
		d := newDevice(t, srv)
		assert.Equal(t, "applied: true", d.mustRun("update"))
		d.env = append(d.env, "OTA_COMMIT=1")
		assert.Equal(t, "2", d.mustRun("run"))
		assert.Equal(t, "2", d.mustRun("run"), "committed: v2 stays")

		// A v2 that does not commit is rolled back at the next start.
		d = newDevice(t, srv)
		assert.Equal(t, "applied: true", d.mustRun("update"))
		assert.Equal(t, "2", d.mustRun("run"), "the trial run")
		assert.Equal(t, "1", d.mustRun("run"), "rolled back, and re-executed as v1")
		assert.Equal(t, "1", d.mustRun("version"))
		assert.Equal(t, "applied: false", d.mustRun("update"), "the rolled-back version is not taken again")
	})

	t.Run("RefusesTamperedBundle", func(t *testing.T) {
		bundle := sign(t, v2, "2")
		bundle[len(bundle)/2] ^= 0x01
		srv := newFixture(t).srv
		srv.AddFirmware("2", bundle)
		d := newDevice(t, srv)
		out, failed := d.run("update")
		require.True(t, failed)
		assert.Contains(t, out, "does not match its signed digest")
		got, err := os.ReadFile(d.target)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(v1, got), "the target is untouched")
		assert.Equal(t, "1", d.mustRun("run"))
	})

	// A kill -9 at any moment of Apply leaves a target that starts: v1 or v2,
	// whole.
	t.Run("KilledDuringApply", func(t *testing.T) {
		srv := newFixture(t).srv
		srv.AddFirmware("2", sign(t, v2, "2"))

		// How long one update takes here sets the range of kill moments.
		d := newDevice(t, srv)
		start := time.Now()
		d.mustRun("update")
		span := time.Since(start)

		rng := rand.New(rand.NewPCG(21, 21))
		outcomes := map[string]int{}
		for i := range 10 {
			d := newDevice(t, srv)
			cmd := d.command("update")
			require.NoError(t, cmd.Start())
			kill := time.AfterFunc(time.Duration(rng.Int64N(int64(span))), func() { _ = cmd.Process.Kill() })
			_ = cmd.Wait()
			kill.Stop()

			got, err := os.ReadFile(d.target)
			require.NoError(t, err, "kill %d: the target exists", i)
			require.True(t, bytes.Equal(got, v1) || bytes.Equal(got, v2), "kill %d: the target is v1 or v2, whole", i)
			version := d.mustRun("run")
			require.Contains(t, []string{"1", "2"}, version, "kill %d", i)
			outcomes[version]++
		}
		t.Logf("after 10 kills during an update of %s: %v", span, outcomes)
	})
}
