package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
)

func TestFirmwareKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	r := cli(t, "", "", "", "firmware", "keygen", "-o", filepath.Join(dir, "vendor"))
	require.Equal(t, 0, r.code, r.stderr)
	key, pub := filepath.Join(dir, "vendor.key"), filepath.Join(dir, "vendor.pub")
	info, err := os.Stat(key)
	require.NoError(t, err)
	if runtime.GOOS != "windows" {
		assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the secret key is private")
	}
	r = cli(t, "", "", "", "firmware", "keygen", "-o", filepath.Join(dir, "vendor"))
	assert.Equal(t, 2, r.code, "an existing key is never replaced")
	assert.Contains(t, r.stderr, "exists")
	program := filepath.Join(dir, "program")
	require.NoError(t, os.WriteFile(program, []byte("#!/bin/sh\necho v2\n"), 0o755))

	r = cli(t, "", "", "", "firmware", "sign", "-key", key, "-version", "2", program)
	require.Equal(t, 0, r.code, r.stderr)
	bundle := program + ".ttfw"
	out := filepath.Join(dir, "extracted")
	r = cli(t, "", "", "", "firmware", "verify", "-pub", pub, "-o", out, bundle)
	require.Equal(t, 0, r.code, r.stderr)
	var m struct {
		Version string
		Size    int
		SHA256  string
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &m))
	assert.Equal(t, "2", m.Version)
	want, _ := os.ReadFile(program)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// A tampered bundle: refused, and no program written.
	b, _ := os.ReadFile(bundle)
	b[len(b)-2] ^= 1
	tampered := filepath.Join(dir, "tampered.ttfw")
	require.NoError(t, os.WriteFile(tampered, b, 0o644))
	out2 := filepath.Join(dir, "extracted2")
	r = cli(t, "", "", "", "firmware", "verify", "-pub", pub, "-o", out2, tampered)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "does not match")
	assert.NoFileExists(t, out2)

	// Another key: refused.
	r = cli(t, "", "", "", "firmware", "keygen", "-o", filepath.Join(dir, "other"))
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, "", "", "", "firmware", "verify", "-pub", filepath.Join(dir, "other.pub"), bundle)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "signature")

	refused(t, "", "sign needs -key and -version", "firmware", "sign", program)
	refused(t, "", "unknown firmware subcommand", "firmware", "nope")
	refused(t, "", "want 32 bytes", "firmware", "verify", "-pub", "bm90IGEga2V5", bundle)
}

func TestFirmwareLatestDownloadAgainstEmulator(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM")
	}
	dir := t.TempDir()
	r := cli(t, "", "", "", "firmware", "keygen", "-o", filepath.Join(dir, "vendor"))
	require.Equal(t, 0, r.code, r.stderr)
	program := filepath.Join(dir, "program")
	require.NoError(t, os.WriteFile(program, []byte("#!/bin/sh\necho v2\n"), 0o755))
	r = cli(t, "", "", "", "firmware", "sign", "-key", filepath.Join(dir, "vendor.key"), "-version", "2", "-o", filepath.Join(dir, "b"), program)
	require.Equal(t, 0, r.code, r.stderr)

	p, info := startEmulator(t, "-tokens", "tok", "-firmware", "2="+filepath.Join(dir, "b"), "-firmware", "1="+program,
		"-function", "hello=echo", "-function", "broken=fail")

	r = cli(t, info.URL, "tok", "", "firmware", "latest")
	require.Equal(t, 0, r.code, r.stderr)
	var fw struct{ ID, Version string }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &fw))
	assert.Equal(t, "2", fw.Version)

	out := filepath.Join(dir, "downloaded")
	r = cli(t, info.URL, "tok", "", "firmware", "download", "-o", out, fw.ID)
	require.Equal(t, 0, r.code, r.stderr)
	want, _ := os.ReadFile(filepath.Join(dir, "b"))
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	r = cli(t, info.URL, "tok", "", "firmware", "download", "-max", "10", "-o", filepath.Join(dir, "small"), fw.ID)
	assert.Equal(t, 2, r.code, "larger than -max: %s", r.stderr)
	assert.NoFileExists(t, filepath.Join(dir, "small"))
	r = cli(t, info.URL, "tok", "", "firmware", "download", "-o", filepath.Join(dir, "none"), "no-such-id")
	assert.Equal(t, 1, r.code)
	assert.NoFileExists(t, filepath.Join(dir, "none"))

	c, err := thethings.NewClient("tok", thethings.WithBaseURL(info.URL))
	require.NoError(t, err)
	answer, err := c.CallFunction(t.Context(), "hello", map[string]int{"a": 1})
	require.NoError(t, err)
	assert.JSONEq(t, `{"a":1}`, string(answer))
	_, err = c.CallFunction(t.Context(), "broken", nil)
	assert.ErrorIs(t, err, thethings.ErrOutcomeUnknown)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.wait(t), p.stderr.String())

	refused(t, "", "want VERSION=FILE", "emulator", "-addr", "127.0.0.1:0", "-firmware", "2")
	refused(t, "", "want NAME=echo", "emulator", "-addr", "127.0.0.1:0", "-function", "x=rm")
}

func TestFirmwareLatestNone(t *testing.T) {
	srv, tok := setup(t)
	r := cli(t, srv.URL(), tok, "", "firmware", "latest")
	assert.Equal(t, 3, r.code, "nothing there")
	assert.Contains(t, r.stderr, "no firmware")
	assert.Empty(t, r.stdout)
}
