// Command device is the firmware pattern: a sensor loop that feeds a
// Writer, survives a network outage without losing a reading, follows its
// sampling interval from $settings.interval, and shuts down cleanly.
//
//	go run ./examples/device -duration 10s
//
// Each reading carries the device's own timestamp and position, so readings
// that wait in the buffer during an outage are stored with the time they
// were taken, not the time they were sent. The Writer batches them
// (WithFlushInterval), keeps those the platform could not take in its
// bounded buffer (WithMaxBuffered) and sends them again when the link is
// back. The subscription to the thing's realtime channel delivers setting
// changes; after a reconnect the device reads its settings again, since a
// change made while it was offline was not pushed to it. On SIGINT (Ctrl-C)
// or at the end of -duration it closes the Writer, which sends whatever is
// still buffered and reports anything it could not send.
//
// With THETHINGS_TOKEN (and optionally THETHINGS_BASE_URL) it runs against
// the real platform: change $settings.interval (milliseconds) in the panel
// to see the device react. Without it, it starts an embedded emulator of the
// platform and plays a scenario: at 30% of -duration the network goes down
// (the device's connections are cut and new ones refused), at 55% it comes
// back, and at 70% a backend sets $settings.interval to half of
// -interval.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
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
		fmt.Fprintln(os.Stderr, "device:", err)
		os.Exit(1)
	}
}

const (
	demoToken = "device-demo-thing"
	key       = "temperature"
)

// run is main without the process: the tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("device", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 10*time.Second, "how long to run; 0 runs until SIGINT")
	interval := fs.Duration("interval", 500*time.Millisecond, "sampling interval until $settings.interval says otherwise")
	spool := fs.String("spool", "", "keep the readings waiting in this directory, so that they survive a crash or a reboot")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *interval <= 0 || *duration < 0 {
		return errors.New("-interval must be positive and -duration not negative")
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
		out.printf("device: thing %s", redact(token))
	} else {
		if emu, err = thethingstest.New(thethingstest.WithThingTokens(demoToken)); err != nil {
			return err
		}
		defer emu.Close()
		l := &link{emu: emu}
		if err := l.up(); err != nil {
			return err
		}
		defer l.down()
		c, err = thethings.NewClient(demoToken,
			thethings.WithBaseURL("http://"+l.addr+"/v2/"),
			// The demo's outage lasts seconds: retry soon after it ends.
			thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 2, MinWait: 100 * time.Millisecond, MaxWait: time.Second}))
		if err != nil {
			return err
		}
		out.printf("device: no THETHINGS_TOKEN: embedded emulator at http://%s/v2/", l.addr)
		if *duration > 0 {
			var wg sync.WaitGroup
			scenarioCtx, cancel := context.WithCancel(ctx)
			defer func() { cancel(); wg.Wait() }()
			wg.Add(1)
			go func() {
				defer wg.Done()
				scenario(scenarioCtx, out, l, emu, *duration, *interval)
			}()
		}
	}

	runCtx := ctx
	if *duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	d := &device{c: c, out: out, interval: *interval, spool: *spool}
	taken, notWritten, err := d.run(runCtx)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		out.printf("device: interrupted, shut down cleanly")
	}
	out.printf("device: readings taken %d, written %d, not written %d", taken, taken-notWritten, notWritten)
	if emu != nil {
		out.printf("device: the emulator holds %d %s readings", emu.StoredCount(demoToken, key), key)
	}
	return nil
}

// device is the firmware: a sensor loop, a Writer and a subscription.
type device struct {
	c        *thethings.Client
	out      *printer
	interval time.Duration
	spool    string // a directory for the Writer's buffer, or "" to keep it in memory
}

// run samples until ctx ends, then closes the Writer. It returns how many
// readings were taken and how many of them could not be written.
func (d *device) run(ctx context.Context) (taken, notWritten int, err error) {
	opts := []thethings.WriterOption{
		thethings.WithBatchSize(100),
		thethings.WithFlushInterval(time.Second),
		thethings.WithMaxBuffered(10000), // about 1 MB of readings at most
		thethings.WithErrorHandler(func(we *thethings.WriteError) {
			d.out.printf("writer: %d readings not written (outcome unknown: %v): %v", len(we.Values), we.Unknown, we.Err)
		}),
	}
	if d.spool != "" {
		// On disk: what waits survives a reboot and is sent, once, by the
		// next run with the same directory.
		opts = append(opts, thethings.WithSpool(d.spool))
	}
	w, err := d.c.NewWriter(opts...)
	if err != nil {
		return 0, 0, err
	}

	// The interval: the setting if there is one, else the flag.
	if ms, ok := d.readInterval(ctx); ok {
		d.interval = ms
	}
	d.out.printf("device: sampling %s every %s", key, d.interval)

	// The realtime channel: setting changes, and reconnects after which
	// the settings are read again.
	intervals := make(chan time.Duration, 1)
	reconnected := make(chan struct{}, 1)
	subCtx, stopSub := context.WithCancel(ctx)
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		d.subscribe(subCtx, intervals, reconnected)
	}()

	tick := time.NewTicker(d.interval)
	sample := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case iv := <-intervals:
			if iv != d.interval {
				d.out.printf("settings: interval %s -> %s", d.interval, iv)
				d.interval = iv
				tick.Reset(iv)
			}
		case <-reconnected:
			// Settings may have changed while offline; the readings
			// buffered meanwhile go out now.
			if iv, ok := d.readInterval(ctx); ok {
				select {
				case intervals <- iv:
				default:
				}
			}
			flushCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := w.Flush(flushCtx)
			cancel()
			if err == nil {
				d.out.printf("device: link back, all %d readings taken so far are written", taken)
			} else {
				d.out.printf("device: flush after reconnect: %v", err)
			}
		case now := <-tick.C:
			v := thethings.Value{Key: key, Value: reading(sample), Datetime: now, Geo: position(sample)}
			if err := w.Add(ctx, v); err != nil {
				if ctx.Err() != nil {
					break loop // the buffer was full at shutdown; Close still sends it
				}
				tick.Stop()
				stopSub()
				<-subDone
				_ = w.Close(context.Background())
				return taken, 0, err
			}
			sample++
			taken++
		}
	}
	tick.Stop()
	stopSub()
	<-subDone

	// Close sends what is buffered. ctx is over, so give it a context of
	// its own: how long the device may spend on it before powering down.
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(closeCtx); err != nil {
		notWritten = countNotWritten(err)
		d.out.printf("writer: close: %v", err)
	}
	return taken, notWritten, nil
}

// subscribe follows the thing's realtime channel until ctx ends.
func (d *device) subscribe(ctx context.Context, intervals chan time.Duration, reconnected chan<- struct{}) {
	up, wasDown := false, false
	onState := func(s thethings.State, cause error) {
		switch {
		case s == thethings.StateConnected && cause == nil && !up:
			up = true
			if wasDown {
				d.out.printf("subscription: connected again")
				select {
				case reconnected <- struct{}{}:
				default:
				}
			} else {
				d.out.printf("subscription: connected")
			}
		case s == thethings.StateDisconnected && up:
			up, wasDown = false, true
			d.out.printf("subscription: disconnected: %v", cause)
		}
	}
	for msg, err := range d.c.Subscribe(ctx,
		thethings.WithKeepAlive(20*time.Second),
		thethings.WithStateHandler(onState)) {
		if err != nil { // the sequence ends silently when ctx ends
			d.out.printf("subscription: ended: %v", err)
			return
		}
		for _, v := range msg.Values {
			if iv, ok := intervalFrom(v); ok {
				select {
				case intervals <- iv:
				default: // the loop has not taken the previous one yet: replace it
					select {
					case <-intervals:
					default:
					}
					intervals <- iv
				}
			}
		}
	}
}

// intervalFrom reads the sampling interval from a pushed settings value:
// $settings.interval itself, or a whole $settings object holding it.
func intervalFrom(v thethings.Value) (time.Duration, bool) {
	switch v.Key {
	case "$settings.interval":
	case "$settings":
		m, ok := v.Value.(map[string]any)
		if !ok || m["interval"] == nil {
			return 0, false
		}
		v = thethings.Value{Key: "$settings.interval", Value: m["interval"]}
	default:
		return 0, false
	}
	ms, err := v.Int64()
	if err != nil || ms < 10 || ms > 24*60*60*1000 {
		return 0, false
	}
	return time.Duration(ms) * time.Millisecond, true
}

// readInterval reads $settings.interval (milliseconds).
func (d *device) readInterval(ctx context.Context) (time.Duration, bool) {
	var ms int64
	err := d.c.Setting(ctx, "interval", &ms)
	switch {
	case errors.Is(err, thethings.ErrResourceNotFound):
		return 0, false
	case err != nil:
		if ctx.Err() == nil {
			d.out.printf("settings: %v", err)
		}
		return 0, false
	}
	iv, ok := intervalFrom(thethings.Value{Key: "$settings.interval", Value: ms})
	return iv, ok
}

// reading is a simulated temperature: a slow wave around 21 °C.
func reading(i int) float64 {
	return math.Round((21+2*math.Sin(float64(i)/20))*100) / 100
}

// position is a simulated position: a walk along the Barcelona seafront.
func position(i int) *thethings.Geo {
	return &thethings.Geo{Lat: 41.3809 + float64(i%1000)*1e-5, Long: 2.1897 + float64(i%1000)*1e-5}
}

// countNotWritten counts the values listed by the WriteErrors in err, a
// join of them as Close returns.
func countNotWritten(err error) int {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		n := 0
		for _, e := range j.Unwrap() {
			n += countNotWritten(e)
		}
		return n
	}
	var we *thethings.WriteError
	if errors.As(err, &we) {
		return len(we.Values)
	}
	return 0
}

// scenario plays the embedded demo: an outage, then a setting pushed by a
// backend.
func scenario(ctx context.Context, out *printer, l *link, emu *thethingstest.Server, duration, interval time.Duration) {
	at := func(frac float64) bool {
		t := time.NewTimer(time.Until(out.start.Add(time.Duration(frac * float64(duration)))))
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !at(0.3) {
		return
	}
	before := emu.StoredCount(demoToken, key)
	l.down()
	out.printf("network: link down (connections cut, new ones refused); %d readings stored so far", before)
	if !at(0.55) {
		return
	}
	if err := l.up(); err != nil {
		out.printf("network: %v", err)
		return
	}
	out.printf("network: link up; %d readings stored so far", emu.StoredCount(demoToken, key))
	if !at(0.7) {
		return
	}
	// A backend (another process, with the same thing token) changes the
	// device's setting.
	backend, err := thethings.NewClient(demoToken, thethings.WithBaseURL("http://"+l.addr+"/v2/"))
	if err != nil {
		out.printf("backend: %v", err)
		return
	}
	ms := max(interval/2, 10*time.Millisecond).Milliseconds()
	out.printf("backend: sets $settings.interval to %d", ms)
	if err := backend.SetSetting(ctx, "interval", ms); err != nil {
		out.printf("backend: %v", err)
	}
}

// link serves the emulator on a fixed loopback address that can be taken
// down and brought back: the device's network.
type link struct {
	emu  *thethingstest.Server
	addr string
	mu   sync.Mutex
	srv  *http.Server
	done chan struct{}
}

// up starts serving, on the same address as before if there was one.
func (l *link) up() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		return nil
	}
	addr := l.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	l.addr = ln.Addr().String()
	l.srv = &http.Server{Handler: l.emu.Handler(), ReadHeaderTimeout: 10 * time.Second}
	l.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(l.srv, l.done)
	return nil
}

// down refuses new connections and cuts the open ones. Requests already
// being answered get a moment to finish, as packets in flight would.
func (l *link) down() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_ = l.srv.Shutdown(ctx) // stops listening; waits for answers in progress
	cancel()
	_ = l.srv.Close() // cuts what is left: the subscription stream
	<-l.done
	l.srv = nil
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
