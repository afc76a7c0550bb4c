// Command subscribe follows keys of a thing live and prints every change of
// their values, surviving lost connections: after a reconnect it backfills
// from history what was written while it was disconnected, so no change is
// missed.
//
//	go run ./examples/subscribe -keys temperature,door -duration 10s -cut 3s
//
// Lines tagged "live" were pushed by the platform; "backfill" ones were
// written while the stream was down and read back from history after the
// reconnect. Connection states (connected, disconnected, reconnecting) are
// printed as they happen.
//
// With THETHINGS_TOKEN (and optionally THETHINGS_BASE_URL) it follows the
// real thing until -duration or Ctrl-C. Without it, it starts an embedded
// emulator of the platform and a writer that sends a temperature every
// 100ms and opens or closes a door now and then; -cut makes the emulator
// cut every stream after that long, to show reconnect and backfill. At the
// end it checks what it received against what the emulator stored.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
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
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "subscribe:", err)
		os.Exit(1)
	}
}

const demoToken = "subscribe-demo-thing"

// run is main without the process: the tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	return runUntil(ctx, nil, args, stdout, stderr, getenv)
}

// runUntil is run that also stops following when until is closed, as when
// -duration has passed: the tests end the demo on what happened, not on
// the clock.
func runUntil(ctx context.Context, until <-chan struct{}, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("subscribe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keysFlag := fs.String("keys", "temperature,door", "comma-separated keys to follow and backfill; empty follows every key without backfill")
	duration := fs.Duration("duration", 10*time.Second, "how long to follow; 0 follows until SIGINT")
	cut := fs.Duration("cut", 3*time.Second, "embedded emulator only: cut every stream after this long (0: never)")
	keepAlive := fs.Duration("keepalive", 20*time.Second, "keep-alive interval asked of the platform; a stream silent for 2s longer is replaced")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *duration < 0 || *cut < 0 {
		return errors.New("-duration and -cut must not be negative")
	}
	var keys []string
	for _, k := range strings.Split(*keysFlag, ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	out := &printer{w: stdout, start: time.Now()}

	var (
		c   *thethings.Client
		emu *thethingstest.Server
		err error
	)
	if token := getenv("THETHINGS_TOKEN"); token != "" {
		var opts []thethings.Option
		if u := getenv("THETHINGS_BASE_URL"); u != "" {
			opts = append(opts, thethings.WithBaseURL(u))
		}
		if c, err = thethings.NewClient(token, opts...); err != nil {
			return err
		}
		out.printf("following thing %s", redact(token))
	} else {
		if emu, err = thethingstest.New(thethingstest.WithThingTokens(demoToken), thethingstest.WithFaults(thethingstest.Faults{StreamCutAfter: *cut})); err != nil {
			return err
		}
		if err := emu.Start(); err != nil {
			return err
		}
		defer emu.Close()
		// Reconnect quickly: the demo's cuts are frequent.
		c, err = thethings.NewClient(demoToken, thethings.WithBaseURL(emu.URL()),
			thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 3, MinWait: 200 * time.Millisecond, MaxWait: 2 * time.Second}))
		if err != nil {
			return err
		}
		cutMsg := "never"
		if *cut > 0 {
			cutMsg = "every " + cut.String()
		}
		out.printf("no THETHINGS_TOKEN: embedded emulator at %s, streams cut %s", emu.URL(), cutMsg)
	}

	followCtx, stopFollowing := context.WithCancel(ctx)
	defer stopFollowing()
	if *duration > 0 {
		var cancel context.CancelFunc
		followCtx, cancel = context.WithTimeout(followCtx, *duration)
		defer cancel()
	}
	if until != nil {
		go func() {
			select {
			case <-until:
				stopFollowing()
			case <-followCtx.Done():
			}
		}()
	}

	f := &follower{out: out, keys: keys, last: map[string]string{}}

	// The embedded demo's writer, stopped before the subscription so that
	// the subscription can receive its last values.
	var writerDone chan struct{}
	writerCtx, stopWriter := context.WithCancel(followCtx)
	defer stopWriter()
	if emu != nil {
		writerDone = make(chan struct{})
		go func() {
			defer close(writerDone)
			demoWriter(writerCtx, emu.URL(), out)
		}()
	}

	subCtx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	subDone := make(chan error, 1)
	go func() { subDone <- f.follow(subCtx, c, *keepAlive) }()

	var subErr error
	select {
	case <-followCtx.Done():
		if writerDone != nil {
			stopWriter()
			<-writerDone
			// Let what the writer wrote last arrive: stop cutting streams,
			// and give a reconnect in progress time to backfill. The
			// writer's writes all completed, so what is stored is final.
			emu.SetFaults(thethingstest.Faults{})
			f.waitFor(subCtx, stored(emu, keys), 10*time.Second)
		}
		stopSub()
		subErr = <-subDone
	case subErr = <-subDone: // ended for good: refused, or out of attempts
		stopWriter()
		if writerDone != nil {
			<-writerDone
		}
	}
	if subErr != nil { // the subscription ends silently when subCtx ends
		return subErr
	}
	if ctx.Err() != nil {
		out.printf("interrupted")
	}
	live, backfill := f.counts()
	out.printf("received %d values: %d live, %d backfilled after reconnects", live+backfill, live, backfill)
	if emu != nil {
		missed, repeated := f.check(stored(emu, keys))
		out.printf("checked against the emulator: %d stored, %d missed, %d repeated", len(stored(emu, keys)), missed, repeated)
	}
	return nil
}

// follower prints the changes of the followed keys.
type follower struct {
	out  *printer
	keys []string // nil: every key

	mu       sync.Mutex
	last     map[string]string // key → last value, as JSON
	got      []seen
	live     int
	backfill int
	changed  chan struct{}
}

type seen struct {
	key   string
	ms    int64
	value string
}

func (f *follower) follow(ctx context.Context, c *thethings.Client, keepAlive time.Duration) error {
	opts := []thethings.SubscribeOption{
		thethings.WithKeepAlive(keepAlive),
		thethings.WithStateHandler(func(s thethings.State, cause error) {
			if cause != nil {
				f.out.printf("%s: %v", s, cause)
			} else {
				f.out.printf("%s", s)
			}
		}),
	}
	if len(f.keys) > 0 {
		opts = append(opts, thethings.WithBackfill(f.keys...))
	}
	for msg, err := range c.Subscribe(ctx, opts...) {
		if err != nil {
			return err
		}
		for _, v := range msg.Values {
			if len(f.keys) > 0 && !slices.Contains(f.keys, v.Key) {
				continue
			}
			f.value(v, msg.Backfill)
		}
	}
	return nil
}

func (f *follower) value(v thethings.Value, backfill bool) {
	b, _ := json.Marshal(v.Value)
	s := string(b)
	f.mu.Lock()
	prev, known := f.last[v.Key]
	f.last[v.Key] = s
	f.got = append(f.got, seen{v.Key, v.Datetime.UnixMilli(), s})
	tag := "live    "
	if backfill {
		f.backfill++
		tag = "backfill"
	} else {
		f.live++
	}
	if f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
	f.mu.Unlock()

	when := ""
	if !v.Datetime.IsZero() {
		when = "  (written " + v.Datetime.Local().Format("15:04:05.000") + ")"
	}
	switch {
	case !known:
		f.out.printf("%s  %s = %s%s", tag, v.Key, s, when)
	case prev != s:
		f.out.printf("%s  %s: %s -> %s%s", tag, v.Key, prev, s, when)
	}
}

func (f *follower) counts() (live, backfill int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live, f.backfill
}

// waitFor waits until every value of want was received, for at most d.
func (f *follower) waitFor(ctx context.Context, want []seen, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		if missed, _ := f.checkLocked(want); missed == 0 {
			f.mu.Unlock()
			return
		}
		ch := make(chan struct{})
		f.changed = ch
		f.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// check compares what was received with what was stored: values stored
// but never received, and values received more than once.
func (f *follower) check(want []seen) (missed, repeated int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checkLocked(want)
}

// checkLocked is check with f.mu held.
func (f *follower) checkLocked(want []seen) (missed, repeated int) {
	count := map[seen]int{}
	for _, s := range f.got {
		count[s]++
	}
	for _, s := range want {
		if count[s] == 0 {
			missed++
			continue
		}
		count[s]--
	}
	for _, n := range count {
		repeated += n
	}
	return missed, repeated
}

// stored is the emulator's ground truth for keys.
func stored(emu *thethingstest.Server, keys []string) []seen {
	var out []seen
	for _, k := range keys {
		for _, r := range emu.Stored(demoToken, k) {
			var v any
			_ = json.Unmarshal(r.Value, &v)
			b, _ := json.Marshal(v)
			out = append(out, seen{k, r.Datetime.UnixMilli(), string(b)})
		}
	}
	return out
}

// demoWriter plays a thing in the field: a temperature every 100ms, and a
// door opened or closed every 1.5s or so.
func demoWriter(ctx context.Context, baseURL string, out *printer) {
	c, err := thethings.NewClient(demoToken, thethings.WithBaseURL(baseURL))
	if err != nil {
		out.printf("writer: %v", err)
		return
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	temp, door := 21.0, "closed"
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		temp += float64(rand.IntN(3)-1) * 0.5
		vals := []thethings.Value{{Key: "temperature", Value: temp}}
		if i%15 == 14 {
			door = map[string]string{"open": "closed", "closed": "open"}[door]
			vals = append(vals, thethings.Value{Key: "door", Value: door})
		}
		// A write cancelled in flight may still be stored after the writer
		// has returned, after the check has read what was stored: each
		// write is let finish.
		if err := c.Write(context.WithoutCancel(ctx), vals); err != nil {
			out.printf("writer: %v", err)
		}
	}
}

// printer prints lines prefixed with the time since start, from any
// goroutine.
type printer struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	el := time.Since(p.start).Truncate(10 * time.Millisecond).Seconds()
	fmt.Fprintf(p.w, "%6.2fs  %s\n", el, printable(fmt.Sprintf(format, args...)))
}

// redact shows the first four characters of a token: enough to tell
// tokens apart, not enough to use one.
func redact(token string) string {
	if len(token) <= 8 {
		return strings.Repeat("*", len(token))
	}
	return token[:4] + "…"
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
