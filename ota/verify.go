package ota

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Verify reads a bundle from r: it checks the manifest's signature with
// pub before any payload byte reaches dst, then streams the payload to dst
// while hashing it, and fails when its size or SHA-256 differ from the
// manifest, or bytes follow it. dst must be a scratch file: when Verify
// fails it may hold part of a payload, which must never be used. No
// bundle makes Verify hold more than its manifest (at most 64 KiB) and a
// 64 KiB buffer.
func Verify(r io.Reader, pub ed25519.PublicKey, dst io.Writer) (Manifest, error) {
	v, err := newVerifier(pub, dst, nil)
	if err != nil {
		return Manifest{}, err
	}
	_, err = io.CopyBuffer(v, r, make([]byte, 64<<10))
	if err != nil && v.err == nil {
		return v.m, invalid(v.part(), err) // r failed
	}
	return v.finish()
}

// verifier checks a bundle written to it, in pieces of any size: the
// signature of its manifest first, then the payload, which it passes on to
// dst while hashing it. A bundle that fails makes Write fail at once, so a
// download into a verifier stops there.
type verifier struct {
	pub    ed25519.PublicKey
	dst    io.Writer
	accept func(Manifest) error // may refuse a signed manifest before its payload

	head []byte // header, manifest and signature, while they arrive
	need int    // their length, once the header is in
	m    Manifest
	h    hash.Hash // of the payload, once the manifest verified
	left int64     // payload bytes to come
	err  error     // the first failure
}

func newVerifier(pub ed25519.PublicKey, dst io.Writer, accept func(Manifest) error) (*verifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("thethings: ota: public key of %d bytes, want %d: %w", len(pub), ed25519.PublicKeySize, ErrSignature)
	}
	return &verifier{pub: pub, dst: dst, accept: accept, need: headerSize}, nil
}

func (v *verifier) Write(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n := len(p)
	for len(p) > 0 && v.err == nil {
		if v.h == nil {
			k := min(len(p), v.need-len(v.head))
			v.head = append(v.head, p[:k]...)
			p = p[k:]
			if len(v.head) == v.need {
				v.err = v.advance()
			}
			continue
		}
		if v.left == 0 {
			v.err = fmt.Errorf("thethings: ota: bytes after the payload's %d: %w", v.m.Size, ErrInvalidBundle)
			break
		}
		k := min(int64(len(p)), v.left)
		v.h.Write(p[:k])
		if _, err := v.dst.Write(p[:k]); err != nil {
			v.err = fmt.Errorf("thethings: ota: write payload: %w", err)
		}
		v.left -= k
		p = p[k:]
	}
	if v.err != nil {
		return n - len(p), v.err
	}
	return n, nil
}

// advance checks the header once it is in, and the manifest and its
// signature once they are.
func (v *verifier) advance() error {
	if v.need == headerSize {
		if string(v.head[:4]) != magic || v.head[4] != formatVersion {
			return fmt.Errorf("thethings: ota: not a bundle of format %d (header %q): %w", formatVersion, v.head[:5], ErrInvalidBundle)
		}
		n := binary.BigEndian.Uint32(v.head[5:])
		if n == 0 || n > maxManifest {
			return fmt.Errorf("thethings: ota: manifest of %d bytes, want 1 to %d: %w", n, maxManifest, ErrInvalidBundle)
		}
		v.need = headerSize + int(n) + ed25519.SignatureSize
		return nil
	}
	end := v.need - ed25519.SignatureSize
	if !ed25519.Verify(v.pub, signed(v.head[:headerSize], v.head[headerSize:end]), v.head[end:]) {
		return fmt.Errorf("thethings: ota: the manifest's signature does not verify with this key: %w", ErrSignature)
	}
	m, err := parseManifest(v.head[headerSize:end])
	if err != nil {
		return err
	}
	v.m, v.head = m, nil
	if v.accept != nil {
		if err := v.accept(m); err != nil {
			return err
		}
	}
	v.h, v.left = sha256.New(), m.Size
	return nil
}

// part names what the bundle was cut in.
func (v *verifier) part() string {
	switch {
	case v.h != nil:
		return fmt.Sprintf("payload (%d of %d bytes)", v.m.Size-v.left, v.m.Size)
	case v.need == headerSize:
		return "header"
	}
	return "manifest"
}

// finish reports whether the whole bundle was written and is good.
func (v *verifier) finish() (Manifest, error) {
	switch {
	case v.err != nil:
		return v.m, v.err
	case v.h == nil || v.left > 0:
		return v.m, invalid(v.part(), io.ErrUnexpectedEOF)
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.m.SHA256 {
		return v.m, fmt.Errorf("thethings: ota: payload SHA-256 %s, signed %s: %w", got, v.m.SHA256, ErrDigest)
	}
	return v.m, nil
}

// invalid is the error of a bundle whose part could not be read: cut
// short, or a failed read (whose cause stays matchable).
func invalid(part string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
		return fmt.Errorf("thethings: ota: bundle truncated in its %s: %w", part, ErrInvalidBundle)
	}
	return fmt.Errorf("thethings: ota: read bundle %s: %w: %w", part, err, ErrInvalidBundle)
}
