package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/ota"
	"github.com/thethings-go/thethings/thethingstest"
)

const firmwareUsage = `Usage:
  thethings firmware keygen [-o NAME]                    write NAME.key (secret) and NAME.pub
  thethings firmware sign -key NAME.key -version V [-o BUNDLE] PROGRAM
                                                         sign PROGRAM into a bundle (default PROGRAM.ttfw)
  thethings firmware verify -pub NAME.pub [-o PROGRAM] BUNDLE
                                                         check a bundle, print its manifest, extract its program
  thethings firmware latest                              print the platform's latest firmware {"id","version"}
  thethings firmware download [-max BYTES] -o FILE ID    download a firmware file

Keys are one line of base64: the Ed25519 private key (64 bytes) or public
key (32 bytes); -pub also takes the base64 text itself. Upload the bundle
to the platform as version V; devices check it with package ota.
Files are written whole or not at all.
`

// runFirmware dispatches the firmware subcommands.
func runFirmware(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageErr("missing subcommand: want keygen, sign, verify, latest or download")
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "help" {
		fmt.Fprint(e.stdout, firmwareUsage)
		return nil
	}
	sub, args := args[0], args[1:]
	fs := newFlags(e, "firmware "+sub)
	fs.help = func() { fmt.Fprint(e.stdout, firmwareUsage) }
	switch sub {
	case "keygen":
		return firmwareKeygen(e, fs, args)
	case "sign":
		return firmwareSign(fs, args)
	case "verify":
		return firmwareVerify(e, fs, args)
	case "latest", "download":
		clientFlags(e, fs)
		return firmwarePlatform(ctx, e, fs, sub, args)
	}
	return usageErr("unknown firmware subcommand %q: want keygen, sign, verify, latest or download", sub)
}

func firmwareKeygen(e *env, fs *flagSet, args []string) error {
	name := fs.String("o", "firmware", "name of the key files: NAME.key and NAME.pub")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	pub, priv, err := ota.GenerateKey()
	if err != nil {
		return err
	}
	pubText := base64.StdEncoding.EncodeToString(pub)
	// The secret first, and never over an existing file.
	if err := writeNew(*name+".key", base64.StdEncoding.EncodeToString(priv)+"\n", 0o600); err != nil {
		return err
	}
	if err := writeNew(*name+".pub", pubText+"\n", 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "secret key: %s (keep it off devices)\npublic key: %s\n%s\n", *name+".key", *name+".pub", pubText)
	return nil
}

// writeNew creates path with text, refusing to replace a file.
func writeNew(path, text string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return usageErr("%s exists; not replacing a key", path)
	}
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if e := f.Sync(); err == nil {
		err = e
	}
	if e := f.Close(); err == nil {
		err = e
	}
	return err
}

func firmwareSign(fs *flagSet, args []string) error {
	keyFile := fs.String("key", "", "private key file (from keygen)")
	version := fs.String("version", "", "the version devices will see, as uploaded to the platform")
	out := fs.String("o", "", "bundle file (default PROGRAM.ttfw)")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *keyFile == "" || *version == "" {
		return usageErr("sign needs -key and -version")
	}
	priv, err := readKey(*keyFile, ed25519.PrivateKeySize)
	if err != nil {
		return err
	}
	in, err := os.Open(pos[0])
	if err != nil {
		return usageErr("%v", err)
	}
	defer in.Close()
	if *out == "" {
		*out = pos[0] + ".ttfw"
	}
	return writeWhole(*out, func(w io.Writer) error {
		err := ota.Sign(w, in, *version, ed25519.PrivateKey(priv))
		if errors.Is(err, ota.ErrVersion) {
			return usageErr("%v", err)
		}
		return err
	})
}

func firmwareVerify(e *env, fs *flagSet, args []string) error {
	pubArg := fs.String("pub", "", "public key file, or the key in base64")
	out := fs.String("o", "", "write the verified program to this file")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *pubArg == "" {
		return usageErr("verify needs -pub")
	}
	pub, err := readKey(*pubArg, ed25519.PublicKeySize)
	if err != nil {
		return err
	}
	in, err := os.Open(pos[0])
	if err != nil {
		return usageErr("%v", err)
	}
	defer in.Close()
	var m ota.Manifest
	verify := func(w io.Writer) (err error) {
		m, err = ota.Verify(in, ed25519.PublicKey(pub), w)
		return err
	}
	if *out == "" {
		err = verify(io.Discard)
	} else {
		err = writeWhole(*out, verify)
	}
	if err != nil {
		return err
	}
	return printJSON(e.stdout, m)
}

func firmwarePlatform(ctx context.Context, e *env, fs *flagSet, sub string, args []string) error {
	out := fs.String("o", "", "file to write (download)")
	maxBytes := fs.Int64("max", ota.DefaultMaxSize, "largest file accepted, in bytes (download)")
	nargs := 0
	if sub == "download" {
		nargs = 1
	}
	pos, err := parse(fs, args, nargs, nargs)
	if err != nil {
		return err
	}
	if sub == "download" && *out == "" {
		return usageErr("download needs -o FILE")
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	if sub == "latest" {
		fw, ok, err := c.LatestFirmware(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("thethings: the platform offers no firmware: %w", thethings.ErrResourceNotFound)
		}
		return printJSON(e.stdout, struct {
			ID      string `json:"id"`
			Version string `json:"version"`
		}{fw.ID, fw.Version})
	}
	return writeWhole(*out, func(w io.Writer) error {
		_, err := c.DownloadFirmware(ctx, pos[0], w, *maxBytes)
		return err
	})
}

// readKey reads a base64 key of size bytes from a file, or from the
// argument itself.
func readKey(arg string, size int) ([]byte, error) {
	text := arg
	if b, err := os.ReadFile(arg); err == nil {
		text = string(b)
	} else if !errors.Is(err, fs.ErrNotExist) || size == ed25519.PrivateKeySize {
		return nil, usageErr("key: %v", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil || len(key) != size {
		return nil, usageErr("key %s: want %d bytes in base64", filepath.Base(arg), size)
	}
	return key, nil
}

// writeWhole writes path through fill, via a temporary file renamed into
// place only when fill succeeds: a failed or refused download or check
// leaves no file.
func writeWhole(path string, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	err = fill(f)
	if err == nil {
		err = f.Sync()
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// printJSON prints v as one JSON line, escaped as every output of the CLI
// is, so nothing the platform sent drives the terminal.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(appendSafeJSON(nil, b), '\n'))
	return err
}

// emulatorFirmware is the emulator's -firmware and -function flags.
type emulatorFirmware struct {
	firmwares, functions []string
}

// register adds the flags to the emulator's.
func (f *emulatorFirmware) register(fs *flagSet) {
	fs.Func("firmware", "serve FILE as firmware VERSION: VERSION=FILE (repeatable)", func(s string) error {
		f.firmwares = append(f.firmwares, s)
		return nil
	})
	fs.Func("function", "serve a cloud function: NAME=echo (answers its params) or NAME=fail (answers 500) (repeatable)", func(s string) error {
		f.functions = append(f.functions, s)
		return nil
	})
}

// setup reads the flags' files and returns the server options, and what
// adds the firmwares to the server once made.
func (f *emulatorFirmware) setup() ([]thethingstest.Option, func(*thethingstest.Server), error) {
	type file struct {
		version string
		data    []byte
	}
	var files []file
	for _, s := range f.firmwares {
		version, path, ok := strings.Cut(s, "=")
		if !ok || version == "" || path == "" {
			return nil, nil, usageErr("-firmware %q: want VERSION=FILE", s)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, usageErr("-firmware: %v", err)
		}
		files = append(files, file{version, data})
	}
	var opts []thethingstest.Option
	for _, s := range f.functions {
		name, kind, _ := strings.Cut(s, "=")
		var fn thethingstest.Function
		switch kind {
		case "echo":
			fn = func(_ context.Context, p json.RawMessage) (any, error) { return p, nil }
		case "fail":
			fn = func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("function failed") }
		default:
			return nil, nil, usageErr("-function %q: want NAME=echo or NAME=fail", s)
		}
		opts = append(opts, thethingstest.WithFunction(name, fn))
	}
	return opts, func(srv *thethingstest.Server) {
		for _, fl := range files {
			srv.AddFirmware(fl.version, fl.data)
		}
	}, nil
}
