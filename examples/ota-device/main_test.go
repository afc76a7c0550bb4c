//go:build unix

package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/thethings-go/thethings/ota"
	"github.com/thethings-go/thethings/thethingstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// build builds this program as version v (broken: its health check fails).
func build(t *testing.T, dir, v string, broken bool) string {
	t.Helper()
	out := filepath.Join(dir, "device-"+v)
	flags := "-X main.version=" + v
	if broken {
		flags += " -X main.broken=yes"
	}
	b, err := exec.Command("go", "build", "-o", out, "-ldflags", flags, ".").CombinedOutput()
	require.NoError(t, err, "%s", b)
	return out
}

// bundle signs the program file as version v.
func bundle(t *testing.T, program, v string, priv []byte) []byte {
	t.Helper()
	f, err := os.Open(program)
	require.NoError(t, err)
	defer f.Close()
	var b bytes.Buffer
	require.NoError(t, ota.Sign(&b, f, v, priv))
	return b.Bytes()
}

func TestDeviceUpdatesAndSurvivesABadUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three programs")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go tool")
	}
	builds := t.TempDir()
	v1, v2, v3 := build(t, builds, "1", false), build(t, builds, "2", false), build(t, builds, "3", true)
	pub, priv, err := ota.GenerateKey()
	require.NoError(t, err)

	srv := thethingstest.NewServer(t, thethingstest.WithThingTokens("device"))
	device := filepath.Join(t.TempDir(), "device")
	program, err := os.ReadFile(v1)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(device, program, 0o755))
	// start runs the device as its supervisor would, once.
	start := func() (string, bool) {
		cmd := exec.Command(device, "-once")
		cmd.Env = append(os.Environ(), "THETHINGS_BASE_URL="+srv.URL(), "THETHINGS_TOKEN=device",
			"OTA_PUBLIC_KEY="+base64.StdEncoding.EncodeToString(pub))
		out, err := cmd.CombinedOutput()
		return string(out), err == nil
	}

	out, ok := start()
	require.True(t, ok, out)
	assert.Equal(t, "version 1 started\nversion 1 is healthy\n", out, "nothing offered yet")

	// Version 2: applied, restarted into, healthy, committed.
	srv.AddFirmware("2", bundle(t, v2, "2", priv))
	out, ok = start()
	require.True(t, ok, out)
	assert.Equal(t, "version 1 started\nversion 1 is healthy\nupdate applied, restarting\nversion 2 started\nversion 2 is healthy\n", out)

	// Version 3 is broken: its trial run fails, and the next start rolls it back.
	srv.AddFirmware("3", bundle(t, v3, "3", priv))
	out, ok = start()
	require.False(t, ok, out)
	assert.Contains(t, out, "update applied, restarting\nversion 3 started\n")
	assert.Contains(t, out, "version 3 is unhealthy")
	out, ok = start()
	require.True(t, ok, out)
	assert.Equal(t, "version 3 was not committed: rolled back, restarting the previous version\nversion 2 started\nversion 2 is healthy\n", out,
		"version 3 is not applied again")

	// A bundle signed by someone else is refused; version 2 keeps running.
	_, otherPriv, err := ota.GenerateKey()
	require.NoError(t, err)
	srv.AddFirmware("4", bundle(t, v3, "4", otherPriv))
	out, ok = start()
	require.True(t, ok, out)
	assert.Contains(t, out, "update failed: thethings: ota: the manifest's signature does not verify")
	got, err := os.ReadFile(device)
	require.NoError(t, err)
	want, err := os.ReadFile(v2)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want, got), "version 2 is in place")

	var states []string
	recs := srv.Stored("device", "firmware")
	for i := len(recs) - 1; i >= 0; i-- {
		var r struct{ Version, State string }
		require.NoError(t, json.Unmarshal(recs[i].Value, &r))
		states = append(states, r.Version+":"+r.State)
	}
	assert.Equal(t, "2:applied 2:committed 3:applied 3:rolled-back 4:failed", strings.Join(states, " "))
}
