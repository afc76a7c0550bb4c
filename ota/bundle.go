package ota

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"
)

// Errors of bundles and updates. Match them with errors.Is.
var (
	// ErrInvalidBundle: the bundle is malformed, truncated, or has bytes
	// after its payload.
	ErrInvalidBundle = errors.New("thethings: ota: invalid bundle")
	// ErrSignature: the manifest's signature does not verify with the key
	// (altered, or signed with another key).
	ErrSignature = errors.New("thethings: ota: bad signature")
	// ErrDigest: the payload's SHA-256 is not the signed one.
	ErrDigest = errors.New("thethings: ota: payload does not match its signed digest")
	// ErrTooLarge: the payload is larger than the Updater accepts (WithMaxSize).
	ErrTooLarge = errors.New("thethings: ota: bundle too large")
	// ErrVersion: a version is not printable text of 1 to 128 bytes, or
	// a bundle's signed version is not the one the platform offers it as.
	ErrVersion = errors.New("thethings: ota: wrong version")
	// ErrTrialPending: an update is on trial and was not committed yet.
	ErrTrialPending = errors.New("thethings: ota: an update is on trial")
)

// Bundle format constants; see the package documentation.
const (
	magic          = "TTFW"
	formatVersion  = 1
	headerSize     = 9
	maxManifest    = 64 << 10
	maxVersionLen  = 128
	sigContext     = "thethings-ota-bundle-v1\x00"
	maxBundleExtra = headerSize + maxManifest + ed25519.SignatureSize // bytes besides the payload
)

// Manifest describes a bundle's payload; it is what the signature covers.
type Manifest struct {
	Version string    `json:"version"` // verbatim, as given to Sign
	Size    int64     `json:"size"`    // payload bytes
	SHA256  string    `json:"sha256"`  // payload digest, 64 lower-case hex digits
	Created time.Time `json:"created"` // when it was signed, UTC
}

// GenerateKey returns a new Ed25519 key pair from crypto/rand. The vendor
// keeps priv secret and gives devices pub.
func GenerateKey() (pub ed25519.PublicKey, priv ed25519.PrivateKey, err error) {
	return ed25519.GenerateKey(rand.Reader)
}

// Sign writes a signed bundle of payload, as version, to dst. The payload
// is read twice, to hash it and then to copy it: an io.ReadSeeker (a
// file) is rewound, any other reader is first copied to a temporary file,
// so memory stays bounded whatever its size. A payload that changes
// between the two reads is an error.
func Sign(dst io.Writer, payload io.Reader, version string, priv ed25519.PrivateKey) error {
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("thethings: ota: private key of %d bytes, want %d: %w", len(priv), ed25519.PrivateKeySize, ErrSignature)
	}
	if err := checkVersion(version); err != nil {
		return err
	}
	rs, done, err := seekable(payload)
	if err != nil {
		return err
	}
	defer done()
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("thethings: ota: sign: %w", err)
	}
	h := sha256.New()
	size, err := io.Copy(h, rs)
	if err != nil {
		return fmt.Errorf("thethings: ota: sign: read payload: %w", err)
	}
	sum := h.Sum(nil)
	if _, err := rs.Seek(start, io.SeekStart); err != nil {
		return fmt.Errorf("thethings: ota: sign: %w", err)
	}
	m := Manifest{Version: version, Size: size, SHA256: hex.EncodeToString(sum), Created: time.Now().UTC().Truncate(time.Second)}
	mb, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("thethings: ota: sign: %w", err)
	}
	head := header(len(mb))
	sig := ed25519.Sign(priv, signed(head, mb))
	if _, err := dst.Write(append(append(head, mb...), sig...)); err != nil {
		return fmt.Errorf("thethings: ota: sign: write: %w", err)
	}
	h.Reset()
	n, err := io.Copy(io.MultiWriter(dst, h), io.LimitReader(rs, size))
	if err != nil {
		return fmt.Errorf("thethings: ota: sign: copy payload: %w", err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), sum) {
		return fmt.Errorf("thethings: ota: sign: the payload changed while it was signed: %w", ErrDigest)
	}
	return nil
}

// seekable returns payload as an io.ReadSeeker, copying it to a temporary
// file when it is not one; done removes that file.
func seekable(payload io.Reader) (io.ReadSeeker, func(), error) {
	if rs, ok := payload.(io.ReadSeeker); ok {
		if _, err := rs.Seek(0, io.SeekCurrent); err == nil {
			return rs, func() {}, nil
		}
	}
	f, err := os.CreateTemp("", "thethings-ota-sign-*")
	if err != nil {
		return nil, nil, fmt.Errorf("thethings: ota: sign: %w", err)
	}
	done := func() { f.Close(); os.Remove(f.Name()) }
	if _, err := io.Copy(f, payload); err != nil {
		done()
		return nil, nil, fmt.Errorf("thethings: ota: sign: read payload: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		done()
		return nil, nil, fmt.Errorf("thethings: ota: sign: %w", err)
	}
	return f, done, nil
}

func header(n int) []byte {
	b := make([]byte, headerSize, headerSize+n+ed25519.SignatureSize)
	copy(b, magic)
	b[4] = formatVersion
	binary.BigEndian.PutUint32(b[5:], uint32(n))
	return b
}

// signed is the message the signature covers.
func signed(head, manifest []byte) []byte {
	msg := make([]byte, 0, len(sigContext)+len(head)+len(manifest))
	return append(append(append(msg, sigContext...), head...), manifest...)
}

func parseManifest(b []byte) (Manifest, error) {
	var m Manifest
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&m); err != nil || d.More() {
		return m, fmt.Errorf("thethings: ota: manifest is not the expected JSON: %w", ErrInvalidBundle)
	}
	if err := checkVersion(m.Version); err != nil {
		return m, err
	}
	if _, err := hex.DecodeString(m.SHA256); err != nil || len(m.SHA256) != 2*sha256.Size || strings.ToLower(m.SHA256) != m.SHA256 {
		return m, fmt.Errorf("thethings: ota: manifest sha256 is not 64 lower-case hex digits: %w", ErrInvalidBundle)
	}
	if m.Size < 0 {
		return m, fmt.Errorf("thethings: ota: manifest size %d: %w", m.Size, ErrInvalidBundle)
	}
	return m, nil
}

// checkVersion accepts 1 to 128 bytes of printable text.
func checkVersion(v string) error {
	ok := v != "" && len(v) <= maxVersionLen
	for _, r := range v {
		ok = ok && unicode.IsPrint(r) && r != unicode.ReplacementChar
	}
	if !ok {
		return fmt.Errorf("thethings: ota: version %.40q: want 1 to %d printable characters: %w", v, maxVersionLen, ErrVersion)
	}
	return nil
}
