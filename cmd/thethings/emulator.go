package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/thethings-go/thethings/thethingstest"
)

// runEmulator serves a thethingstest.Server until ctx ends (SIGINT or
// SIGTERM), in memory or, with -data, kept in a directory. Its tokens are made up for a local fake, so unlike a real
// thing's token they are printed, for the user to pass to clients.
func runEmulator(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "emulator")
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	tokens := fs.String("tokens", "", "comma-separated thing tokens to seed (default: one made up)")
	codes := fs.String("codes", "", "comma-separated activation codes, CODE or CODE:PRODUCT (default: two made up, unless -data holds unused ones)")
	asJSON := fs.Bool("json", false, `print one JSON line {"url","tokens","codes","mqtt","control","data"} instead of the text`)
	var f thethingstest.Faults
	fs.DurationVar(&f.Latency, "latency", 0, "latency added before every response")
	fs.IntVar(&f.Every503, "every503", 0, "answer every Nth non-stream request 503")
	fs.IntVar(&f.Every429, "every429", 0, "answer every Nth non-stream request 429")
	fs.DurationVar(&f.RetryAfter, "retry-after", 0, "Retry-After for 503/429 (default 1s)")
	fs.BoolVar(&f.NoRetryAfter, "no-retry-after", false, "send the 503/429 answers without Retry-After")
	fs.IntVar(&f.DropBeforeBodyEvery, "drop-before-body-every", 0, "close every Nth request before reading its body")
	fs.IntVar(&f.DropEvery, "drop-every", 0, "close every Nth write request without answering")
	fs.BoolVar(&f.DropStores, "drop-stores", false, "with -drop-every: store the dropped write's values")
	fs.IntVar(&f.StoreThenFailEvery, "store-then-fail-every", 0, "store every Nth write, then answer it with an error")
	fs.IntVar(&f.StoreThenFailStatus, "store-then-fail-status", 0, "status of those answers: 500, 502, 503 or 504 (default 502)")
	fs.DurationVar(&f.StoreThenFailRetryAfter, "store-then-fail-retry-after", 0, "Retry-After of those answers (default none)")
	fs.DurationVar(&f.StreamCutAfter, "stream-cut-after", 0, "cut subscription streams after this long")
	fs.BoolVar(&f.StopKeepAlives, "stop-keepalives", false, "send no {} keep-alives on streams")
	fs.BoolVar(&f.SplitFrames, "split-frames", false, "write stream frames one byte at a time")
	fs.BoolVar(&f.CoalesceFrames, "coalesce-frames", false, "flush stream frames together")
	endInclusive := fs.Bool("enddate-inclusive", false, "make the read endDate bound inclusive")
	legacy := fs.Bool("legacy-write-response", false, `answer writes {"status":"Success","message":"Created"}`)
	withMQTT := fs.Bool("mqtt", false, "also run an MQTT broker bridged to the API, on a port of its own")
	var fw emulatorFirmware
	fw.register(fs)
	dataDir := fs.String("data", "", "keep things, tokens, codes, values, settings and positions in `DIR`, on disk before each answer, across restarts and crashes (default: in memory, lost when the emulator stops)")
	control := fs.Bool("control", false, "serve counters, every token and value, and faults under "+thethingstest.ControlPrefix+" (to requests addressed to -addr itself)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if err := f.Validate(); err != nil {
		return usageErr("%v", err)
	}

	toks := splitList(*tokens)
	var acs []thethingstest.ActivationCode
	for _, c := range splitList(*codes) {
		code, product, _ := strings.Cut(c, ":")
		if code == "" {
			return usageErr("-codes: empty code in %q", c)
		}
		acs = append(acs, thethingstest.ActivationCode{Code: code, ProductID: product})
	}
	opts := []thethingstest.Option{
		thethingstest.WithAddr(*addr),
		thethingstest.WithFaults(f),
		thethingstest.WithEndDateInclusive(*endInclusive),
		thethingstest.WithLegacyWriteResponse(*legacy),
	}
	if *withMQTT {
		opts = append(opts, thethingstest.WithMQTT())
	}
	fwOpts, addFirmwares, err := fw.setup()
	if err != nil {
		return err
	}
	opts = append(opts, fwOpts...)
	if *control {
		opts = append(opts, thethingstest.WithControlAPI())
	}
	if *dataDir != "" {
		opts = append(opts, thethingstest.WithDataDir(*dataDir))
	}
	if len(toks) > 0 || *codes != "" {
		opts = append(opts, thethingstest.WithThingTokens(toks...))
	}
	opts = append(opts, thethingstest.WithActivationCodes(acs...))

	srv, err := thethingstest.New(opts...)
	if err != nil && *dataDir != "" {
		return err // the flags were checked above: the data directory failed
	}
	if err != nil {
		return usageErr("%v", err)
	}
	addFirmwares(srv)
	if *tokens == "" && *codes == "" && len(srv.ActivationCodes()) == 0 {
		// Two codes to try activate with, unless -data kept unused ones.
		srv.AddActivationCode(thethingstest.ActivationCode{Code: randomString(18)})
		srv.AddActivationCode(thethingstest.ActivationCode{Code: randomString(18)})
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		return err
	}
	info := emulatorInfo{URL: srv.URL(), Tokens: srv.Tokens(), Codes: []codeInfo{}, MQTT: srv.MQTTURL(), Data: *dataDir}
	if *control {
		info.Control = controlURL(srv.URL())
	}
	for _, c := range srv.ActivationCodes() {
		info.Codes = append(info.Codes, codeInfo{Code: c.Code, Product: c.ProductID})
	}
	if *asJSON {
		b, err := json.Marshal(info)
		if err != nil {
			srv.Close()
			return err
		}
		fmt.Fprintf(e.stdout, "%s\n", b)
	} else {
		printEmulator(e.stdout, info)
	}
	<-ctx.Done()
	return srv.Close()
}

// emulatorInfo is the line emulator -json prints.
type emulatorInfo struct {
	URL    string     `json:"url"`
	Tokens []string   `json:"tokens"`
	Codes  []codeInfo `json:"codes"`
	MQTT   string     `json:"mqtt"`
	// Control is where the server's counters, ground truth and faults
	// are served (thethingstest.WithControlAPI); "" without -control.
	Control string `json:"control"`
	// Data is the -data directory; "" when the store is in memory.
	Data string `json:"data"`
}

// controlURL returns the control API's URL on the server of baseURL.
func controlURL(baseURL string) string {
	u, err := url.Parse(baseURL)
	if err != nil {
		return ""
	}
	u.Path = thethingstest.ControlPrefix
	return u.String()
}

type codeInfo struct {
	Code    string `json:"code"`
	Product string `json:"product,omitempty"`
}

func printEmulator(w io.Writer, info emulatorInfo) {
	fmt.Fprintf(w, "thethings.iO emulator listening on %s\n", info.URL)
	for _, t := range info.Tokens {
		fmt.Fprintf(w, "thing token:     %s\n", t)
	}
	for _, c := range info.Codes {
		if c.Product != "" {
			fmt.Fprintf(w, "activation code: %s (product %s)\n", c.Code, c.Product)
		} else {
			fmt.Fprintf(w, "activation code: %s\n", c.Code)
		}
	}
	if info.MQTT != "" {
		fmt.Fprintf(w, "MQTT broker:     %s\n", info.MQTT)
	}
	if info.Control != "" {
		fmt.Fprintf(w, "control API:     %s (counters, ground truth, faults)\n", info.Control)
	}
	if info.Data != "" {
		fmt.Fprintf(w, "data directory:  %s (kept across restarts)\n", info.Data)
	} else {
		fmt.Fprintf(w, "store:           in memory, lost when stopped (keep it with -data DIR)\n")
	}
	tok := "THING_TOKEN"
	if len(info.Tokens) > 0 {
		tok = info.Tokens[0]
	}
	fmt.Fprintf(w, "\ntry, in another shell:\n")
	fmt.Fprintf(w, "  export THETHINGS_BASE_URL=%s THETHINGS_TOKEN=%s\n", info.URL, tok)
	fmt.Fprintf(w, "  thethings write temperature 21.5\n  thethings read temperature\n  thethings tail\n")
	if info.Control != "" {
		fmt.Fprintf(w, "  curl '%sstored?token=%s&key=temperature'\n", info.Control, tok)
	}
	fmt.Fprintf(w, "\nstop with Ctrl-C\n")
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

// randomString returns n random bytes as URL-safe base64.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
