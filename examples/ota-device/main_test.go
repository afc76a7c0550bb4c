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

func TestDeviceUpdatesAndSurvivesABadUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three programs")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go tool")
	}
	pub, priv, err := ota.GenerateKey()
	require.NoError(t, err)
	// This program as versions 1 to 3 (3's health check fails), each
	// signed as a bundle.
	builds := t.TempDir()
	programs, bundles := map[string][]byte{}, map[string][]byte{}
	for _, v := range []string{"1", "2", "3"} {
		out := filepath.Join(builds, "device-"+v)
		flags := "-X main.version=" + v
		if v == "3" {
			flags += " -X main.broken=yes"
		}
		b, err := exec.Command("go", "build", "-o", out, "-ldflags", flags, ".").CombinedOutput()
		require.NoError(t, err, "%s", b)
		programs[v], err = os.ReadFile(out)
		require.NoError(t, err)
		var bundle bytes.Buffer
		require.NoError(t, ota.Sign(&bundle, bytes.NewReader(programs[v]), v, priv))
		bundles[v] = bundle.Bytes()
	}

	srv := thethingstest.NewServer(t, thethingstest.WithThingTokens("device"))
	device := filepath.Join(t.TempDir(), "device")
	require.NoError(t, os.WriteFile(device, programs["1"], 0o755))
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
	srv.AddFirmware("2", bundles["2"])
	out, ok = start()
	require.True(t, ok, out)
	assert.Equal(t, "version 1 started\nversion 1 is healthy\nupdate applied, restarting\nversion 2 started\nversion 2 is healthy\n", out)

	// Version 3 is broken: its trial run fails, and the next start rolls it back.
	srv.AddFirmware("3", bundles["3"])
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
	var other bytes.Buffer
	require.NoError(t, ota.Sign(&other, bytes.NewReader(programs["3"]), "4", otherPriv))
	srv.AddFirmware("4", other.Bytes())
	out, ok = start()
	require.True(t, ok, out)
	assert.Contains(t, out, "update failed: thethings: ota: the manifest's signature does not verify")
	got, err := os.ReadFile(device)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(programs["2"], got), "version 2 is in place")

	var states []string
	recs := srv.Stored("device", "firmware")
	for i := len(recs) - 1; i >= 0; i-- {
		var r struct{ Version, State string }
		require.NoError(t, json.Unmarshal(recs[i].Value, &r))
		states = append(states, r.Version+":"+r.State)
	}
	assert.Equal(t, "2:applied 2:committed 3:applied 3:rolled-back 4:failed", strings.Join(states, " "))
}
