// Command emulator runs the thethings.iO device API emulator on a local
// address, for trying a client by hand (curl, the SDK's examples).
//
//	go run ./examples/emulator -addr 127.0.0.1:8080
//
// Without -tokens and -codes it makes up one thing token and two activation
// codes and prints them with a few ready curl commands. It serves until
// SIGINT or SIGTERM.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/thethings-go/thethings/thethingstest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "emulator:", err)
		os.Exit(1)
	}
}

// run parses args, starts the emulator, prints how to reach it to stdout
// and serves until ctx is done.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("emulator", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	tokens := fs.String("tokens", "", "comma-separated thing tokens to seed (default: one made up)")
	codes := fs.String("codes", "", "comma-separated activation codes, CODE or CODE:PRODUCT (default: two made up)")
	var f thethingstest.Faults
	fs.DurationVar(&f.Latency, "latency", 0, "latency added before every response")
	fs.IntVar(&f.Every503, "every503", 0, "answer every Nth non-stream request 503")
	fs.IntVar(&f.Every429, "every429", 0, "answer every Nth non-stream request 429")
	fs.DurationVar(&f.RetryAfter, "retry-after", 0, "Retry-After for 503/429 (default 1s)")
	fs.IntVar(&f.DropBeforeBodyEvery, "drop-before-body-every", 0, "close every Nth request before reading its body")
	fs.IntVar(&f.DropEvery, "drop-every", 0, "close every Nth write request without answering")
	fs.BoolVar(&f.DropStores, "drop-stores", false, "with -drop-every: store the dropped write's values")
	fs.DurationVar(&f.StreamCutAfter, "stream-cut-after", 0, "cut subscription streams after this long")
	fs.BoolVar(&f.StopKeepAlives, "stop-keepalives", false, "send no {} keep-alives on streams")
	fs.BoolVar(&f.SplitFrames, "split-frames", false, "write stream frames one byte at a time")
	fs.BoolVar(&f.CoalesceFrames, "coalesce-frames", false, "flush stream frames together")
	endInclusive := fs.Bool("enddate-inclusive", false, "make the read endDate bound inclusive")
	legacy := fs.Bool("legacy-write-response", false, `answer writes {"status":"Success","message":"Created"}`)
	if err := fs.Parse(args); err != nil {
		return err
	}

	var toks []string
	var acs []thethingstest.ActivationCode
	if *tokens == "" && *codes == "" {
		toks = []string{randomString(32)}
		acs = []thethingstest.ActivationCode{{Code: randomString(25)}, {Code: randomString(25)}}
	}
	toks = append(toks, splitList(*tokens)...)
	for _, c := range splitList(*codes) {
		code, product, _ := strings.Cut(c, ":")
		acs = append(acs, thethingstest.ActivationCode{Code: code, ProductID: product})
	}

	srv, err := thethingstest.New(
		thethingstest.WithAddr(*addr),
		thethingstest.WithThingTokens(toks...),
		thethingstest.WithActivationCodes(acs...),
		thethingstest.WithFaults(f),
		thethingstest.WithEndDateInclusive(*endInclusive),
		thethingstest.WithLegacyWriteResponse(*legacy),
	)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	printUsage(stdout, srv.URL(), toks, acs)
	<-ctx.Done()
	return srv.Close()
}

func printUsage(w io.Writer, url string, toks []string, acs []thethingstest.ActivationCode) {
	fmt.Fprintf(w, "thethings.iO emulator listening on %s\n", url)
	for _, t := range toks {
		fmt.Fprintf(w, "thing token:     %s\n", t)
	}
	for _, c := range acs {
		if c.ProductID != "" {
			fmt.Fprintf(w, "activation code: %s (product %s)\n", c.Code, c.ProductID)
		} else {
			fmt.Fprintf(w, "activation code: %s\n", c.Code)
		}
	}
	tok := "THING_TOKEN"
	if len(toks) > 0 {
		tok = toks[0]
	}
	fmt.Fprintf(w, "\ntry:\n")
	if len(acs) > 0 {
		fmt.Fprintf(w, "  curl -i -H 'Content-Type: application/json' -d '{\"activationCode\":\"%s\"}' %sthings/\n", acs[0].Code, url)
	}
	fmt.Fprintf(w, "  curl -i -H 'Content-Type: application/json' -d '{\"values\":[{\"key\":\"fun\",\"value\":\"9000\"}]}' %sthings/%s\n", url, tok)
	fmt.Fprintf(w, "  curl -i '%sthings/%s/resources/fun?limit=10'\n", url, tok)
	fmt.Fprintf(w, "  curl -N '%sthings/%s?keepAlive=10000'\n", url, tok)
	fmt.Fprintf(w, "  curl -i '%sutils/date?thingToken=%s&format=unix_timestamp'\n", url, tok)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// randomString returns n random bytes as URL-safe base64 (43 chars for 32).
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
