// Command thethings is a command line client for the thethings.iO device
// API, and a local fake of it for tests and experiments.
//
//	go install ./cmd/thethings    # from a clone, until the module is published
//
// Usage:
//
//	thethings emulator [-addr A] [-tokens T1,T2] [-codes C1,C2:PRODUCT] [-data DIR] [-control] [-json] [fault flags]
//	thethings activate CODE [-product P]
//	thethings write KEY VALUE [-at TIME] [-geo LAT,LONG]
//	thethings write < values.jsonl
//	thethings read KEY [-since TIME] [-until TIME] [-limit N] [-format csv|jsonl] [-resume CURSOR]
//	thethings tail [-keys K1,K2] [-backfill] [-n N]
//	thethings settings [get PATH | set PATH VALUE]
//	thethings geo [LAT,LONG]
//	thethings time
//	thethings version
//	thethings firmware keygen | sign | verify | latest | download
//
// Every command but emulator and activate needs a thing token, from -token
// or the THETHINGS_TOKEN environment variable; the API's base URL comes from
// -base-url or THETHINGS_BASE_URL (default the platform's). The token is
// never printed, except by activate, which prints the new token once because
// it is the only way to learn it.
//
// A VALUE on the command line is taken as JSON when it is valid JSON (a
// number, true/false, null, an object, an array or a "quoted string"), and
// as a plain string otherwise: 21.5 is a number, '"21.5"' and abc are
// strings. write -json refuses a VALUE that is not JSON.
//
// Nothing the platform or a device sent reaches the terminal raw: control
// characters in values, keys, ids and error messages are escaped (\x1b,
// \u009b), in JSON output as \u escapes of the same meaning. Errors are
// one line.
//
// Exit status: 0 success, 1 the platform (or the network) failed, 2 the
// command line or the input was wrong (refused before any request), 3 the
// thing has no such value, setting or position.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/thethings-go/thethings"
)

// Exit statuses.
const (
	exitOK       = 0
	exitPlatform = 1
	exitUsage    = 2
	exitNothing  = 3 // the thing has no such value, setting or position
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// env is what a command runs with.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	token, baseURL string // from the global flags, or ""
}

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis after the name
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"emulator", "[-addr A] [-tokens T1,T2] [-codes C1,C2:PRODUCT] [-data DIR] [-control] [-json] [fault flags]", "run a local fake of the platform until interrupted", runEmulator},
		{"activate", "CODE [-product P]", "activate a thing and print its new token (shown only this once)", runActivate},
		{"write", "KEY VALUE [-at TIME] [-geo LAT,LONG]  |  write < values.jsonl", "write a value, or JSON lines from stdin", runWrite},
		{"read", "KEY [-since TIME] [-until TIME] [-limit N] [-format csv|jsonl] [-resume CURSOR]", "print a key's history, newest first", runRead},
		{"tail", "[-keys K1,K2] [-backfill] [-n N]", "print values as they are written, one JSON line each", runTail},
		{"settings", "[get PATH | set PATH VALUE]", "print or change the thing's settings", runSettings},
		{"geo", "[LAT,LONG]", "print or set the thing's position", runGeo},
		{"time", "", "print the platform's clock", runTime},
		{"version", "", "print the version of thethings and of Go it was built with", runVersion},
		{"firmware", "keygen | sign | verify | latest | download (see thethings firmware -h)", "sign, check and download firmware bundles", runFirmware},
	}
}

// run is main without the process: it parses args, runs the command and
// returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	fs := flag.NewFlagSet("thethings", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&e.token, "token", "", "thing token (default $THETHINGS_TOKEN)")
	fs.StringVar(&e.baseURL, "base-url", "", "API base URL (default $THETHINGS_BASE_URL, else "+thethings.DefaultBaseURL+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		return fail(stderr, "", usageErr("%v", err))
	}
	args = fs.Args()
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	if name == "help" {
		if len(args) == 1 {
			usage(stdout)
			return exitOK
		}
		name, args = args[1], []string{args[1], "-h"} // help CMD: CMD -h
	}
	for _, c := range commands {
		if c.name == name {
			return fail(stderr, name, c.run(ctx, e, args[1:]))
		}
	}
	return fail(stderr, "", usageErr("unknown command %q (see thethings help)", name))
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: thethings [-token T] [-base-url URL] COMMAND [flags] [args]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
The token comes from -token or THETHINGS_TOKEN, the base URL from -base-url
or THETHINGS_BASE_URL. A VALUE is JSON when it parses as JSON, else a string
(-json refuses what is not JSON). Control characters the platform or a
device sent are printed escaped.
Exit status: 0 ok, 1 platform or network error, 2 bad command line or input,
3 no such value, setting or position.
Run "thethings COMMAND -h" for a command's flags.
`)
}

// usageError is a mistake in the command line or the input: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// errHelp asks for a command's usage to be printed with status 0.
var errHelp = flag.ErrHelp

// fail prints err, if any, on one line and returns the exit status it
// stands for.
func fail(stderr io.Writer, cmd string, err error) int {
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	prefix := "thethings"
	if cmd != "" {
		prefix += " " + cmd
	}
	// The SDK's errors start with "thethings: "; say it once.
	fmt.Fprintf(stderr, "%s: %s\n", prefix, errorLine(strings.TrimPrefix(err.Error(), "thethings: ")))
	switch {
	case isUsage(err):
		if cmd != "" {
			fmt.Fprintf(stderr, "Run \"thethings %s -h\" for usage.\n", cmd)
		}
		return exitUsage
	case errors.Is(err, thethings.ErrResourceNotFound):
		return exitNothing
	}
	return exitPlatform
}

// isUsage tells a refused input (exit 2) from a failure of the platform or
// the network (exit 1). The SDK refuses bad keys, values, options, cursors
// and tokens before any request; the same sentinels inside an answer of the
// platform are the platform's.
func isUsage(err error) bool {
	var ue *usageError
	if errors.As(err, &ue) {
		return true
	}
	var ae *thethings.APIError
	if errors.As(err, &ae) {
		return false
	}
	for _, s := range []error{thethings.ErrInvalidKey, thethings.ErrInvalidValue, thethings.ErrInvalidOption,
		thethings.ErrInvalidCursor, thethings.ErrInvalidToken, thethings.ErrNoToken} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// retryable reports whether the same command may succeed later: a network
// failure, a timeout, a rate limit or a 5xx answer; not a refusal of the
// credentials or the input, nor the user's interrupt. (The CLI sets no
// deadline of its own, so a deadline met is a request's timeout: the
// network.)
// TODO: thethings.Retryable once the SDK has it.
func retryable(err error) bool {
	var ae *thethings.APIError
	switch {
	case isUsage(err), errors.Is(err, context.Canceled), errors.Is(err, thethings.ErrPaginationStalled):
		return false
	case errors.Is(err, thethings.ErrRateLimited):
		return true
	case errors.As(err, &ae):
		return ae.StatusCode == 408 || ae.StatusCode >= 500 && ae.StatusCode != 501
	}
	return true // no answer: the network
}

// flagSet is a command's flags, with its usage for -h.
type flagSet struct {
	*flag.FlagSet
	help func()
}

// newFlags returns a flag set for a command that prints its usage on -h.
func newFlags(e *env, name string) *flagSet {
	fs := flag.NewFlagSet("thethings "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	// The flag package calls Usage on every parse error; parse prints the
	// usage for -h only.
	fs.Usage = func() {}
	help := func() {
		fmt.Fprintf(e.stdout, "Usage: thethings %s %s\n", name, synopsis(name))
		fs.SetOutput(e.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return &flagSet{fs, help}
}

// synopsis returns the arguments of command name.
func synopsis(name string) string {
	for _, c := range commands {
		if c.name == name {
			return c.args
		}
	}
	return ""
}

// clientFlags adds -token and -base-url to a command's flags.
func clientFlags(e *env, fs *flagSet) {
	// Func flags print no default: the token must not show in -h.
	fs.Func("token", "thing token (default $THETHINGS_TOKEN)", func(s string) error { e.token = s; return nil })
	fs.Func("base-url", "API base URL (default $THETHINGS_BASE_URL)", func(s string) error { e.baseURL = s; return nil })
}

// parse parses flags and positional arguments in any order: flags may
// follow arguments (write KEY VALUE -at TIME). An argument that starts with
// '-' and a digit or '.' is a negative number, not a flag, and everything
// after "--" is an argument. It checks the number of arguments.
func parse(fs *flagSet, args []string, minArgs, maxArgs int) ([]string, error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' || isNumberStart(a[1]) {
			pos = append(pos, a)
			continue
		}
		one := []string{a}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if f := fs.Lookup(name); f != nil && !hasValue && !isBoolFlag(f) && i+1 < len(args) {
			one = append(one, args[i+1])
			i++
		}
		if err := fs.Parse(one); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.help()
				return nil, errHelp
			}
			return nil, usageErr("%v", err)
		}
	}
	if len(pos) < minArgs || len(pos) > maxArgs {
		switch {
		case maxArgs == 0:
			return nil, usageErr("unexpected argument %q", pos[0])
		case len(pos) > maxArgs:
			return nil, usageErr("too many arguments: %q", pos[maxArgs:])
		default:
			name := strings.TrimPrefix(fs.Name(), "thethings ")
			return nil, usageErr("missing argument; usage: thethings %s %s", name, synopsis(name))
		}
	}
	return pos, nil
}

func isNumberStart(b byte) bool { return b >= '0' && b <= '9' || b == '.' }

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// client returns a client for the token and base URL of the flags or the
// environment.
func (e *env) client() (*thethings.Client, error) {
	token := e.token
	if token == "" {
		token = e.getenv("THETHINGS_TOKEN")
	}
	if token == "" {
		return nil, usageErr("no thing token: set THETHINGS_TOKEN or pass -token")
	}
	return thethings.NewClient(token, e.options()...)
}

// options returns the client options every command shares.
func (e *env) options() []thethings.Option {
	opts := []thethings.Option{thethings.WithUserAgent("thethings-cli/" + thethings.Version)}
	base := e.baseURL
	if base == "" {
		base = e.getenv("THETHINGS_BASE_URL")
	}
	if base != "" {
		opts = append(opts, thethings.WithBaseURL(base))
	}
	return opts
}

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "version")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	_, err := fmt.Fprintln(e.stdout, version())
	return err
}

// version is the module and version the binary was built from (a tag when
// installed with go install module@version, else "(devel)" and the
// commit), the SDK's own version and the Go toolchain's.
func version() string {
	path, v := "github.com/thethings-go/thethings", "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		path, v = bi.Main.Path, bi.Main.Version
		if v == "" {
			v = "(devel)"
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && v == "(devel)":
				v += " " + s.Value[:min(12, len(s.Value))]
			case s.Key == "vcs.modified" && s.Value == "true" && strings.HasPrefix(v, "(devel)"):
				v += "+modified"
			}
		}
	}
	return fmt.Sprintf("thethings version %s: module %s, SDK %s, built with %s for %s/%s",
		v, path, thethings.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
