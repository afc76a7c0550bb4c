package ota_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings/ota"
)

// testKey is a fixed key pair, so that failures repeat.
var testPub, testPriv = func() (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}()

func sign(t testing.TB, payload []byte, version string) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, ota.Sign(&b, bytes.NewReader(payload), version, testPriv))
	return b.Bytes()
}

func TestSignVerify(t *testing.T) {
	payload := bytes.Repeat([]byte("firmware "), 10_000)
	bundle := sign(t, payload, "v1.2.0")
	var got bytes.Buffer
	m, err := ota.Verify(bytes.NewReader(bundle), testPub, &got)
	require.NoError(t, err)
	sum := sha256.Sum256(payload)
	assert.Equal(t, "v1.2.0", m.Version)
	assert.Equal(t, int64(len(payload)), m.Size)
	assert.Equal(t, hex.EncodeToString(sum[:]), m.SHA256)
	assert.False(t, m.Created.IsZero())
	assert.Equal(t, payload, got.Bytes())

	// A reader that is no file is spooled, with the same result.
	var b2 bytes.Buffer
	require.NoError(t, ota.Sign(&b2, iotest.OneByteReader(bytes.NewReader(payload)), "v1.2.0", testPriv))
	got.Reset()
	_, err = ota.Verify(iotest.HalfReader(bytes.NewReader(b2.Bytes())), testPub, &got)
	require.NoError(t, err)
	assert.Equal(t, payload, got.Bytes())
	got.Reset()
	_, err = ota.Verify(iotest.OneByteReader(bytes.NewReader(b2.Bytes())), testPub, &got)
	require.NoError(t, err, "a bundle arriving a byte at a time")
	assert.Equal(t, payload, got.Bytes())
	_, err = ota.Verify(iotest.TimeoutReader(bytes.NewReader(b2.Bytes())), testPub, io.Discard)
	require.ErrorIs(t, err, iotest.ErrTimeout, "a failed read keeps its cause")
	require.ErrorIs(t, err, ota.ErrInvalidBundle)
}

func TestVerifyRefuses(t *testing.T) {
	payload := bytes.Repeat([]byte{1, 2, 3}, 1000)
	bundle := sign(t, payload, "2")
	n := int(binary.BigEndian.Uint32(bundle[5:9]))
	manifestAt, sigAt, payloadAt := 9, 9+n, 9+n+64
	otherPub, _, err := ota.GenerateKey()
	require.NoError(t, err)
	flip := func(at int) []byte {
		b := bytes.Clone(bundle)
		b[at] ^= 0x01
		return b
	}
	huge := bytes.Clone(bundle)
	binary.BigEndian.PutUint32(huge[5:9], 64<<10+1)
	for name, tc := range map[string]struct {
		bundle []byte
		pub    ed25519.PublicKey
		want   error
	}{
		"tampered payload":    {flip(len(bundle) - 1), testPub, ota.ErrDigest},
		"tampered payload 0":  {flip(payloadAt), testPub, ota.ErrDigest},
		"tampered manifest":   {flip(manifestAt + 12), testPub, ota.ErrSignature},
		"tampered header":     {flip(4), testPub, ota.ErrInvalidBundle},
		"tampered signature":  {flip(sigAt + 3), testPub, ota.ErrSignature},
		"wrong key":           {bundle, otherPub, ota.ErrSignature},
		"short key":           {bundle, testPub[:31], ota.ErrSignature},
		"bytes after payload": {append(bytes.Clone(bundle), 0), testPub, ota.ErrInvalidBundle},
		"manifest over 64KiB": {huge, testPub, ota.ErrInvalidBundle},
		"not a bundle":        {payload, testPub, ota.ErrInvalidBundle},
	} {
		t.Run(name, func(t *testing.T) {
			var dst bytes.Buffer
			_, err := ota.Verify(bytes.NewReader(tc.bundle), tc.pub, &dst)
			require.ErrorIs(t, err, tc.want)
			if tc.want == ota.ErrSignature || name == "manifest over 64KiB" {
				assert.Zero(t, dst.Len(), "nothing reaches dst before the signature verifies")
			}
		})
	}
	// Cut anywhere, a bundle is refused.
	for cut := 0; cut < len(bundle); cut += 97 {
		_, err := ota.Verify(bytes.NewReader(bundle[:cut]), testPub, io.Discard)
		require.ErrorIs(t, err, ota.ErrInvalidBundle, "cut at %d", cut)
	}
}

func TestSignRefusesBadInput(t *testing.T) {
	for _, v := range []string{"", "a\nb", string(make([]byte, 129))} {
		assert.ErrorIs(t, ota.Sign(io.Discard, bytes.NewReader(nil), v, testPriv), ota.ErrVersion)
	}
	assert.Error(t, ota.Sign(io.Discard, bytes.NewReader(nil), "1", testPriv[:10]))
}

func FuzzVerify(f *testing.F) {
	f.Add(sign(f, []byte("abc"), "1"))
	f.Add([]byte("TTFW\x01\x00\x00\x00\x02{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var dst bytes.Buffer
		m, err := ota.Verify(bytes.NewReader(b), testPub, &dst)
		if err == nil && int64(dst.Len()) != m.Size {
			t.Fatalf("verified %d bytes, manifest says %d", dst.Len(), m.Size)
		}
	})
}
