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

// Verify reads a bundle from r: it checks the manifest's signature with
// pub before reading any payload byte, then streams the payload to dst
// while hashing it, and fails when its size or SHA-256 differ from the
// manifest, or bytes follow it. dst must be a scratch file: when Verify
// fails it may hold part of a payload, which must never be used.
func Verify(r io.Reader, pub ed25519.PublicKey, dst io.Writer) (Manifest, error) {
	return verify(r, pub, dst, nil)
}

// verify is Verify with accept, which may refuse a manifest, signed and
// valid, before its payload is read.
func verify(r io.Reader, pub ed25519.PublicKey, dst io.Writer, accept func(Manifest) error) (Manifest, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Manifest{}, fmt.Errorf("thethings: ota: public key of %d bytes, want %d: %w", len(pub), ed25519.PublicKeySize, ErrSignature)
	}
	head := make([]byte, headerSize)
	if _, err := io.ReadFull(r, head); err != nil {
		return Manifest{}, invalid("header", err)
	}
	if string(head[:4]) != magic || head[4] != formatVersion {
		return Manifest{}, fmt.Errorf("thethings: ota: not a bundle of format %d (header %q): %w", formatVersion, head[:5], ErrInvalidBundle)
	}
	n := binary.BigEndian.Uint32(head[5:])
	if n == 0 || n > maxManifest {
		return Manifest{}, fmt.Errorf("thethings: ota: manifest of %d bytes, want 1 to %d: %w", n, maxManifest, ErrInvalidBundle)
	}
	buf := make([]byte, int(n)+ed25519.SignatureSize)
	if _, err := io.ReadFull(r, buf); err != nil {
		return Manifest{}, invalid("manifest", err)
	}
	mb, sig := buf[:n], buf[n:]
	if !ed25519.Verify(pub, signed(head, mb), sig) {
		return Manifest{}, fmt.Errorf("thethings: ota: the manifest's signature does not verify with this key: %w", ErrSignature)
	}
	m, err := parseManifest(mb)
	if err != nil {
		return Manifest{}, err
	}
	if accept != nil {
		if err := accept(m); err != nil {
			return m, err
		}
	}
	return m, copyPayload(r, dst, m)
}

// copyPayload streams m.Size bytes of r to dst while hashing them, then
// checks that r ends there and the digest is m's.
func copyPayload(r io.Reader, dst io.Writer, m Manifest) error {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	for left := m.Size; left > 0; {
		k, err := io.ReadFull(r, buf[:min(left, int64(len(buf)))])
		h.Write(buf[:k])
		if _, werr := dst.Write(buf[:k]); werr != nil {
			return fmt.Errorf("thethings: ota: write payload: %w", werr)
		}
		left -= int64(k)
		if err != nil {
			return invalid(fmt.Sprintf("payload (%d of %d bytes)", m.Size-left, m.Size), err)
		}
	}
	var one [1]byte
	switch k, err := io.ReadFull(r, one[:]); {
	case k > 0:
		return fmt.Errorf("thethings: ota: bytes after the payload's %d: %w", m.Size, ErrInvalidBundle)
	case err != io.EOF:
		return invalid("end of bundle", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return fmt.Errorf("thethings: ota: payload SHA-256 %s, signed %s: %w", got, m.SHA256, ErrDigest)
	}
	return nil
}

// invalid is the error of a bundle whose part could not be read: cut
// short, or a failed read (whose cause stays matchable).
func invalid(part string, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("thethings: ota: bundle truncated in its %s: %w", part, ErrInvalidBundle)
	}
	return fmt.Errorf("thethings: ota: read bundle %s: %w: %w", part, err, ErrInvalidBundle)
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
