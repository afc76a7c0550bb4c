// Command export writes the full history of one key, between two dates, to
// CSV or JSON lines: the backend pattern for reports, archives and
// migrations.
//
//	go run ./examples/export -key temperature -from 2024-05-01 -to 2024-05-04 -format csv -out temps.csv
//
// Without -state it follows the whole window with Client.Values, which
// fetches pages of 1000 values and yields every stored value exactly once.
//
// With -state FILE the export is resumable: it reads page by page with
// Client.Read and, after each page is written to -out, saves the page's
// cursor and the output's length to FILE. Interrupt it (Ctrl-C, a crash, a
// deadline) and run the same command again: it cuts -out back to the last
// saved length and continues from the saved cursor, so every value is
// written exactly once, with no loss and no repeat. -max-pages N stops
// after N pages, for jobs that export a long history in slices.
//
// Values come newest first, as the platform returns them. A progress line
// goes to stderr.
//
// With THETHINGS_TOKEN (and optionally THETHINGS_BASE_URL) it exports from
// the real platform. Without it, it starts an embedded emulator of the
// platform seeded with 5000 readings, one a minute from 2024-05-01 00:00
// UTC, so the export crosses several pages (the seed is the same on every
// run, so a resumed export continues in a new process).
package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

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
		fmt.Fprintln(os.Stderr, "export:", err)
		os.Exit(1)
	}
}

// The embedded emulator's data set.
const (
	demoToken = "export-demo-thing"
	demoCount = 5000
)

var demoStart = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)

type options struct {
	key    string
	from   time.Time
	to     time.Time
	format string
	out    string
	state  string
	pages  int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.key, "key", "temperature", "the key (resource) to export")
	from := fs.String("from", "", "first instant, inclusive: 2006-01-02, 2006-01-02T15:04:05Z or 20060102150405 (default: the oldest value)")
	to := fs.String("to", "", "end instant, exclusive, same forms (default: now)")
	fs.StringVar(&o.format, "format", "csv", "csv or jsonl")
	fs.StringVar(&o.out, "out", "", "output file (default stdout; required with -state)")
	fs.StringVar(&o.state, "state", "", "resume file: makes the export resumable")
	fs.IntVar(&o.pages, "max-pages", 0, "with -state: stop after this many pages (a slice of a long export); run again to continue")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.from, err = parseDate(*from); err != nil {
		return o, fmt.Errorf("-from: %w", err)
	}
	if o.to, err = parseDate(*to); err != nil {
		return o, fmt.Errorf("-to: %w", err)
	}
	if o.format != "csv" && o.format != "jsonl" {
		return o, fmt.Errorf("-format %q: want csv or jsonl", o.format)
	}
	if o.pages < 0 || o.pages > 0 && o.state == "" {
		return o, errors.New("-max-pages needs -state and must not be negative")
	}
	if o.state != "" && o.out == "" {
		return o, errors.New("-state needs -out: a resumed export appends to a file")
	}
	return o, nil
}

// parseDate accepts a plain date besides the forms thethings.ParseTime
// knows. "" is the zero time: an open end.
func parseDate(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return thethings.ParseTime(s)
}

// run is main without the process: the tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	c, cleanup, err := connect(getenv, stderr)
	if err != nil {
		return err
	}
	defer cleanup()

	window := &thethings.ReadOptions{Start: o.from, End: o.to}
	if o.state != "" {
		return exportResumable(ctx, c, o, window, stderr)
	}

	var out io.Writer = stdout
	if o.out != "" {
		f, err := os.Create(o.out)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	bw := bufio.NewWriter(out)
	enc := newEncoder(bw, o.format)
	if err := enc.header(); err != nil {
		return err
	}
	prog := newProgress(stderr)
	n := 0
	for v, err := range c.Values(ctx, o.key, window) {
		if err != nil {
			return fmt.Errorf("after %d values: %w", n, err)
		}
		if err := enc.value(v); err != nil {
			return err
		}
		n++
		if n%1000 == 0 {
			prog.update("", n, v.Datetime)
		}
	}
	if err := enc.flush(); err != nil {
		return err
	}
	prog.done(n)
	return nil
}

// state is what -state saves after every page. Offset is the length of the
// output file once the page was written: on resume the file is cut back to
// it, so a page written after the last save is not written twice.
type state struct {
	Key      string    `json:"key"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Format   string    `json:"format"`
	Out      string    `json:"out"`
	Cursor   string    `json:"cursor"`
	Offset   int64     `json:"offset"`
	Exported int       `json:"exported"`
	Pages    int       `json:"pages"`
	Done     bool      `json:"done"`
}

func exportResumable(ctx context.Context, c *thethings.Client, o options, window *thethings.ReadOptions, stderr io.Writer) error {
	st := state{Key: o.key, From: o.from, To: o.to, Format: o.format, Out: o.out}
	saved, err := loadState(o.state)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case saved.Key != st.Key || !saved.From.Equal(st.From) || !saved.To.Equal(st.To) || saved.Format != st.Format || saved.Out != st.Out:
		return fmt.Errorf("%s belongs to another export (key %q, -out %s); remove it to start afresh", o.state, saved.Key, saved.Out)
	case saved.Done:
		fmt.Fprintf(stderr, "export: already complete: %d values in %s\n", saved.Exported, saved.Out)
		return nil
	default:
		st = saved
		fmt.Fprintf(stderr, "export: resuming after %d values (%s)\n", st.Exported, plural(st.Pages, "page"))
	}

	f, err := os.OpenFile(o.out, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	// Whatever was written after the last saved page goes.
	if err := f.Truncate(st.Offset); err != nil {
		return err
	}
	if _, err := f.Seek(st.Offset, io.SeekStart); err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	enc := newEncoder(bw, o.format)
	if st.Offset == 0 {
		if err := enc.header(); err != nil {
			return err
		}
	}

	prog := newProgress(stderr)
	for pages := 0; ; pages++ {
		if o.pages > 0 && pages == o.pages {
			fmt.Fprintf(stderr, "export: stopped after %s (-max-pages), %d values so far; run the same command to continue\n", plural(pages, "page"), st.Exported)
			return nil
		}
		opts := *window
		opts.Limit = 1000
		opts.Cursor = st.Cursor
		page, err := c.Read(ctx, o.key, &opts)
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintf(stderr, "export: interrupted after %d values; run the same command to resume\n", st.Exported)
			}
			return err
		}
		for _, v := range page.Values {
			if err := enc.value(v); err != nil {
				return err
			}
		}
		// The page is on disk before its cursor is saved.
		if err := enc.flush(); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if st.Offset, err = f.Seek(0, io.SeekCurrent); err != nil {
			return err
		}
		st.Cursor = page.Next
		st.Exported += len(page.Values)
		st.Pages++
		st.Done = page.Next == ""
		if err := saveState(o.state, st); err != nil {
			return err
		}
		if st.Done {
			prog.done(st.Exported)
			return nil
		}
		if len(page.Values) > 0 {
			prog.update(fmt.Sprintf("page %d, ", st.Pages), st.Exported, page.Values[len(page.Values)-1].Datetime)
		}
	}
}

func loadState(path string) (state, error) {
	var st state
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// saveState replaces the state file atomically: a crash leaves the old one
// or the new one, never half of one.
func saveState(path string, st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// encoder writes values as CSV rows or JSON lines.
type encoder struct {
	bw     *bufio.Writer
	format string
	csv    *csv.Writer
	json   *json.Encoder
}

func newEncoder(bw *bufio.Writer, format string) *encoder {
	e := &encoder{bw: bw, format: format}
	if format == "csv" {
		e.csv = csv.NewWriter(bw)
	} else {
		e.json = json.NewEncoder(bw)
	}
	return e
}

func (e *encoder) header() error {
	if e.csv == nil {
		return nil
	}
	return e.csv.Write([]string{"datetime", "key", "value", "lat", "long"})
}

// jsonLine is one line of the jsonl format.
type jsonLine struct {
	Datetime string   `json:"datetime"`
	Key      string   `json:"key"`
	Value    any      `json:"value"`
	Geo      *jsonGeo `json:"geo,omitempty"`
}

type jsonGeo struct {
	Lat  float64 `json:"lat"`
	Long float64 `json:"long"`
}

func (e *encoder) value(v thethings.Value) error {
	when := v.Datetime.UTC().Format("2006-01-02T15:04:05.000Z")
	if e.csv != nil {
		// Numbers, strings and bools as they are; objects and arrays as JSON.
		s, err := v.Text()
		if err != nil {
			b, jerr := json.Marshal(v.Value)
			if jerr != nil {
				return jerr
			}
			s = string(b)
		}
		lat, long := "", ""
		if v.Geo != nil {
			lat = strconv.FormatFloat(v.Geo.Lat, 'f', -1, 64)
			long = strconv.FormatFloat(v.Geo.Long, 'f', -1, 64)
		}
		return e.csv.Write([]string{when, v.Key, s, lat, long})
	}
	line := jsonLine{Datetime: when, Key: v.Key, Value: v.Value}
	if v.Geo != nil {
		line.Geo = &jsonGeo{Lat: v.Geo.Lat, Long: v.Geo.Long}
	}
	return e.json.Encode(line)
}

func (e *encoder) flush() error {
	if e.csv != nil {
		e.csv.Flush()
		if err := e.csv.Error(); err != nil {
			return err
		}
	}
	return e.bw.Flush()
}

// progress reports on stderr: one line redrawn in place on a terminal, a
// line per step otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(prefix string, n int, oldest time.Time) {
	msg := fmt.Sprintf("export: %s%d values, back to %s", prefix, n, oldest.UTC().Format(time.RFC3339))
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\033[K", msg)
		return
	}
	fmt.Fprintln(p.w, msg)
}

func (p *progress) done(n int) {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "export: done, %d values in %s\n", n, time.Since(p.start).Round(time.Millisecond))
}

// connect returns a client for the real platform when THETHINGS_TOKEN is
// set, else for an embedded emulator seeded with demo data.
func connect(getenv func(string) string, stderr io.Writer) (*thethings.Client, func(), error) {
	if token := getenv("THETHINGS_TOKEN"); token != "" {
		var opts []thethings.Option
		if u := getenv("THETHINGS_BASE_URL"); u != "" {
			opts = append(opts, thethings.WithBaseURL(u))
		}
		c, err := thethings.NewClient(token, opts...)
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(stderr, "export: thing %s\n", redact(token))
		return c, func() {}, nil
	}
	srv, err := thethingstest.New(thethingstest.WithThingTokens(demoToken))
	if err != nil {
		return nil, nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, nil, err
	}
	recs := make([]thethingstest.Record, demoCount)
	for i := range recs {
		recs[i] = thethingstest.Record{
			Value:    json.RawMessage(strconv.FormatFloat(20+float64(i%100)/10, 'f', 1, 64)),
			Datetime: demoStart.Add(time.Duration(i) * time.Minute),
		}
		if i%10 == 0 {
			recs[i].Geo = &thethingstest.Geo{Lat: 41.3874, Long: 2.1686}
		}
	}
	if err := srv.Seed(demoToken, "temperature", recs...); err != nil {
		srv.Close()
		return nil, nil, err
	}
	c, err := thethings.NewClient(demoToken, thethings.WithBaseURL(srv.URL()))
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	fmt.Fprintf(stderr, "export: no THETHINGS_TOKEN: embedded emulator at %s with %d temperatures from %s\n",
		srv.URL(), demoCount, demoStart.Format(time.RFC3339))
	return c, func() { srv.Close() }, nil
}

// plural is "1 page", "2 pages".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// redact shows the first four characters of a token: enough to tell
// tokens apart, not enough to use one.
func redact(token string) string {
	if len(token) <= 8 {
		return strings.Repeat("*", len(token))
	}
	return token[:4] + "…"
}
