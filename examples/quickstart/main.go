// Command quickstart runs the whole thethings.iO device flow once and
// prints each step: activate a thing, write readings with positions and
// their own timestamps, read them back (also a history of more than 1000
// values, which takes several requests), set and read $geo and $settings,
// and receive a write live through a subscription.
//
//	go run ./examples/quickstart
//
// Without THETHINGS_TOKEN it starts an embedded emulator of the platform,
// with an activation code, and runs there: nothing to install or sign up
// for. With THETHINGS_TOKEN (and optionally THETHINGS_BASE_URL) it runs the
// same flow against the real platform and skips activation; with
// THETHINGS_ACTIVATION_CODE (and optionally THETHINGS_PRODUCT_ID) instead
// of a token it activates a new thing on the real platform first. Against
// the real platform the keys are prefixed "quickstart." and the readings
// are stamped within the hour before the run, so runs don't mix.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// demoCode is the activation code seeded in the embedded emulator.
const demoCode = "QUICKSTART-DEMO-CODE"

// run is main without the process: the tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: quickstart (configured by THETHINGS_TOKEN, THETHINGS_BASE_URL, THETHINGS_ACTIVATION_CODE, THETHINGS_PRODUCT_ID)")
		return fmt.Errorf("unexpected arguments %q", args)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	p := func(format string, a ...any) { fmt.Fprintln(stdout, printable(fmt.Sprintf(format, a...))) }

	// 1. A client for a thing.
	var opts []thethings.Option
	if u := getenv("THETHINGS_BASE_URL"); u != "" {
		opts = append(opts, thethings.WithBaseURL(u))
	}
	token, code, product := getenv("THETHINGS_TOKEN"), getenv("THETHINGS_ACTIVATION_CODE"), getenv("THETHINGS_PRODUCT_ID")
	prefix := "quickstart."
	reads := func() int { return -1 } // requests for history: known only to the emulator
	if token == "" && code == "" {
		srv, err := thethingstest.New(thethingstest.WithActivationCodes(thethingstest.ActivationCode{Code: demoCode}))
		if err != nil {
			return err
		}
		if err := srv.Start(); err != nil {
			return err
		}
		defer srv.Close()
		opts = []thethings.Option{thethings.WithBaseURL(srv.URL())}
		code, prefix = demoCode, ""
		reads = func() int { return srv.Requests(thethingstest.RouteRead) }
		p("No THETHINGS_TOKEN: running against an embedded emulator of the platform at %s", srv.URL())
		p("(set THETHINGS_TOKEN to run against the real platform)")
	}
	var c *thethings.Client
	var err error
	if token != "" {
		if c, err = thethings.NewClient(token, opts...); err != nil {
			return err
		}
		p("\n1. Thing token %s from THETHINGS_TOKEN: activation skipped", redact(token))
	} else {
		if c, err = thethings.Activate(ctx, code, product, opts...); err != nil {
			return fmt.Errorf("activate: %w", err)
		}
		p("\n1. Activated a thing with code %s: thing token %s (a device saves it; the code is now spent)", redact(code), redact(c.ThingToken()))
	}

	// 2. The platform's clock, for devices without one.
	now, err := c.ServerTime(ctx)
	if err != nil {
		return fmt.Errorf("server time: %w", err)
	}
	p("\n2. Platform time: %s", now.Format(time.RFC3339))

	// 3. Readings taken offline: their own timestamps and positions, one request.
	temperature := prefix + "temperature"
	base := time.Now().UTC().Truncate(time.Second)
	batch := []thethings.Value{
		{Key: temperature, Value: 21.5, Datetime: base.Add(-3 * time.Minute), Geo: &thethings.Geo{Lat: 41.3874, Long: 2.1686}},
		{Key: temperature, Value: 22.25, Datetime: base.Add(-2 * time.Minute), Geo: &thethings.Geo{Lat: 41.3879, Long: 2.1699}},
		{Key: temperature, Value: 23, Datetime: base.Add(-1 * time.Minute), Geo: &thethings.Geo{Lat: 41.3885, Long: 2.1712}},
	}
	if err := c.Write(ctx, batch); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	p("\n3. Wrote %d %s readings with positions and their own timestamps in one request", len(batch), temperature)

	// 4. Read them back, newest first.
	page, err := c.Read(ctx, temperature, &thethings.ReadOptions{Limit: 3, Start: base.Add(-3 * time.Minute), End: base})
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	p("\n4. Read back, newest first:")
	for _, v := range page.Values {
		f, _ := v.Float64()
		geo := "no position"
		if v.Geo != nil {
			geo = fmt.Sprintf("at %.4f,%.4f", v.Geo.Lat, v.Geo.Long)
		}
		p("   %s  %-6v %s", v.Datetime.Format("15:04:05"), f, geo)
	}

	// 5. A longer history: the platform answers at most 1000 values per
	// request, Values follows the pages and yields each value once.
	counter := prefix + "counter"
	const n = 1500
	start := base.Add(-time.Hour)
	many := make([]thethings.Value, n)
	for i := range many {
		many[i] = thethings.Value{Key: counter, Value: i, Datetime: start.Add(time.Duration(i) * 2 * time.Second)}
	}
	if err := c.Write(ctx, many); err != nil {
		return fmt.Errorf("write %d values: %w", n, err)
	}
	p("\n5. Wrote %d %s values (Write sends them 100 per request)", n, counter)
	readsBefore := reads()
	seen := make([]bool, n)
	got, repeated, want := 0, 0, n-1
	for v, err := range c.Values(ctx, counter, &thethings.ReadOptions{Start: start, End: start.Add(n * 2 * time.Second)}) {
		if err != nil {
			return fmt.Errorf("values: %w", err)
		}
		i, err := v.Int64()
		if err != nil || i < 0 || i >= n {
			return fmt.Errorf("values: unexpected value %v", v.Value)
		}
		if i != int64(want) {
			return fmt.Errorf("values: got %d, want %d (newest first)", i, want)
		}
		want--
		if seen[i] {
			repeated++
		}
		seen[i] = true
		got++
	}
	missed := 0
	for _, ok := range seen {
		if !ok {
			missed++
		}
	}
	p("   Values walked them newest first: %d of %d values, %d missed, %d repeated", got, n, missed, repeated)
	if r := reads() - readsBefore; readsBefore >= 0 {
		p("   (%d requests: the platform answers at most 1000 values per request)", r)
	}

	// 6. $geo: the thing's current position.
	pos := thethings.Geo{Lat: 41.390205, Long: 2.154007}
	if err := c.SetLocation(ctx, pos); err != nil {
		return fmt.Errorf("set location: %w", err)
	}
	// The platform applies magic writes asynchronously: read until it shows.
	var g thethings.Geo
	if err := eventually(ctx, func() (bool, error) {
		g, err = c.Location(ctx)
		if errors.Is(err, thethings.ErrResourceNotFound) {
			return false, nil
		}
		return err == nil && g == pos, err
	}); err != nil {
		return fmt.Errorf("location: %w", err)
	}
	p("\n6. $geo set and read back: lat %v, long %v", g.Lat, g.Long)

	// 7. $settings: the thing's configuration. SetSettings would replace
	// the whole object, other programs' settings included (the device
	// example follows $settings.interval), so this example keeps its
	// settings under its own name.
	if err := c.SetSetting(ctx, "quickstart", map[string]any{"interval": 60, "name": "quickstart"}); err != nil {
		return fmt.Errorf("set setting: %w", err)
	}
	if err := c.SetSetting(ctx, "quickstart.interval", 30); err != nil {
		return fmt.Errorf("set setting: %w", err)
	}
	var mine any
	var interval int
	if err := eventually(ctx, func() (bool, error) {
		if err := c.Setting(ctx, "quickstart.interval", &interval); err != nil && !errors.Is(err, thethings.ErrResourceNotFound) {
			return false, err
		}
		settings, err := c.Settings(ctx)
		mine = settings["quickstart"]
		m, _ := mine.(map[string]any)
		return err == nil && interval == 30 && m["name"] == "quickstart", err
	}); err != nil {
		return fmt.Errorf("settings: %w", err)
	}
	p("\n7. $settings.quickstart set to {interval: 60, name: quickstart}, then its interval to 30: %v; $settings.quickstart.interval = %d", mine, interval)

	// 8. Realtime: a write arrives on the subscription.
	door := prefix + "door"
	var written time.Time
	var writeErr error
	subCtx, stopSub := context.WithTimeout(ctx, 30*time.Second)
	defer stopSub()
	onState := func(s thethings.State, cause error) {
		if s == thethings.StateConnected && cause == nil && written.IsZero() {
			// Another program would write this; here, the same one.
			written = time.Now()
			writeErr = c.Write(subCtx, []thethings.Value{{Key: door, Value: "open"}})
			if writeErr != nil {
				stopSub()
			}
		}
	}
	p("\n8. Subscribed to the thing's realtime channel; writing %s = open ...", door)
	for msg, err := range c.Subscribe(subCtx, thethings.WithStateHandler(onState)) {
		if writeErr != nil {
			return fmt.Errorf("write while subscribed: %w", writeErr)
		}
		if err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		v := msg.Values[0]
		if v.Key != door {
			continue // something else written to the thing meanwhile
		}
		s, _ := v.Text()
		p("   received live: %s = %s, %s after the write", v.Key, s, time.Since(written).Round(100*time.Microsecond))
		break // leaving the loop closes the connection
	}
	if writeErr != nil {
		return fmt.Errorf("write while subscribed: %w", writeErr)
	}
	if err := subCtx.Err(); err != nil { // the loop ends silently when subCtx ends
		return fmt.Errorf("subscribe: nothing received: %w", err)
	}

	p("\nDone. Every step above used the public API of github.com/thethings-go/thethings.")
	return nil
}

// eventually calls check every 200ms until it reports done, an error, or
// ctx ends (10s at most).
func eventually(ctx context.Context, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		done, err := check()
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// redact shows the first four characters of a secret: enough to tell
// tokens apart, not enough to use one.
func redact(secret string) string {
	if len(secret) <= 8 {
		return strings.Repeat("*", len(secret))
	}
	return secret[:4] + "…"
}

// printable escapes what a device or the platform sent that a terminal
// would act on: control characters but newline and tab (ESC starts the
// sequences that retitle, clear or paste), C1 controls, bidi overrides
// and bytes that are not UTF-8.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r == utf8.RuneError, unicode.IsControl(r), r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
