package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/thethings-go/thethings"
)

// pageSize is the values per request of read: the platform's maximum. One
// page is all read holds in memory.
const pageSize = 1000

func runRead(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "read")
	clientFlags(e, fs)
	since := fs.String("since", "", "oldest instant, inclusive: now, a duration ago (24h), 2006-01-02, 20060102150405 or ISO 8601 (default: the oldest value)")
	until := fs.String("until", "", "newest instant, exclusive, same forms (default: the newest value)")
	limit := fs.Int("limit", 0, "print at most this many values (default: all)")
	format := fs.String("format", "csv", "csv (datetime,key,value,lat,long; the value column is JSON: \"21.5\" is a string, 21.5 a number) or jsonl")
	resume := fs.String("resume", "", "continue an interrupted read from the cursor it printed")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	key := pos[0] // Read checks it before any request
	opts := thethings.ReadOptions{Cursor: *resume}
	now := time.Now()
	if *since != "" {
		if opts.Start, err = parseTime(*since, now); err != nil {
			return usageErr("-since: %v", err)
		}
	}
	if *until != "" {
		if opts.End, err = parseTime(*until, now); err != nil {
			return usageErr("-until: %v", err)
		}
	}
	if !opts.Start.IsZero() && !opts.End.IsZero() && !opts.Start.Before(opts.End) {
		return usageErr("-since %s is not before -until %s", *since, *until)
	}
	if *limit < 0 {
		return usageErr("-limit %d: must not be negative", *limit)
	}
	if *format != "csv" && *format != "jsonl" {
		return usageErr("-format %q: want csv or jsonl", *format)
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	return read(ctx, c, key, opts, *limit, newEncoder(e.stdout, *format), newProgress(e.stderr), e.stderr)
}

// read prints key's values page by page. After each page is written out it
// remembers the page's cursor: when the read stops early (interrupted, an
// error, -limit reached with more left) that cursor goes to stderr, and
// -resume with it prints exactly the values not printed yet. A key never
// written is ErrResourceNotFound (exit status 3); a window without values
// prints the CSV header only.
//
// It reads with Client.Read rather than Client.Values because only Read
// hands out the cursor of each page; both hold one page in memory.
func read(ctx context.Context, c *thethings.Client, key string, opts thethings.ReadOptions, limit int, enc *encoder, prog *progress, stderr io.Writer) error {
	header := opts.Cursor == "" // a resumed read prints no second header
	n := 0
	for {
		opts.Limit = pageSize
		if limit > 0 {
			opts.Limit = min(pageSize, limit-n)
		}
		page, err := c.Read(ctx, key, &opts)
		if err != nil {
			if isUsage(err) || n == 0 && opts.Cursor == "" && errors.Is(err, thethings.ErrResourceNotFound) {
				return err
			}
			return interrupted(stderr, prog, n, opts.Cursor, err)
		}
		if header {
			if err := enc.header(); err != nil {
				return err
			}
			header = false
		}
		for _, v := range page.Values {
			if err := enc.value(v); err != nil {
				return interrupted(stderr, prog, n, opts.Cursor, err)
			}
		}
		// The page is out before its cursor counts.
		if err := enc.flush(); err != nil {
			return interrupted(stderr, prog, n, opts.Cursor, err)
		}
		n += len(page.Values)
		if len(page.Values) > 0 {
			prog.update(n, page.Values[len(page.Values)-1].Datetime)
		}
		opts.Cursor, opts.Start, opts.End = page.Next, time.Time{}, time.Time{}
		if page.Next == "" {
			prog.done(n)
			return nil
		}
		if limit > 0 && n >= limit {
			prog.done(n)
			fmt.Fprintf(stderr, "thethings read: -limit %d reached; to go on: -resume %s\n", limit, page.Next)
			return nil
		}
	}
}

// interrupted returns err after telling where the read stopped. Running
// the command again is advised only when that may help: after an
// interrupt or a failure that may pass (retryable), not after a refusal.
func interrupted(stderr io.Writer, prog *progress, n int, cursor string, err error) error {
	prog.clear()
	again := retryable(err) || errors.Is(err, context.Canceled)
	switch {
	case cursor != "" && again:
		fmt.Fprintf(stderr, "thethings read: stopped after %d values; resume with: -resume %s\n", n, cursor)
	case cursor != "":
		fmt.Fprintf(stderr, "thethings read: stopped after %d values; what is left starts at -resume %s\n", n, cursor)
	case again:
		fmt.Fprintf(stderr, "thethings read: stopped before the first page was out; run the same command again\n")
	}
	return err
}

// encoder writes values as CSV rows or JSON lines.
type encoder struct {
	bw   *bufio.Writer
	csv  *csv.Writer
	json *jsonWriter
	row  []string
}

func newEncoder(w io.Writer, format string) *encoder {
	e := &encoder{bw: bufio.NewWriterSize(w, 64<<10)}
	e.json = newJSONWriter(e.bw)
	if format == "csv" {
		e.csv = csv.NewWriter(e.bw)
		e.row = make([]string, 5)
	}
	return e
}

func (e *encoder) header() error {
	if e.csv == nil {
		return nil
	}
	return e.csv.Write([]string{"datetime", "key", "value", "lat", "long"})
}

func (e *encoder) value(v thethings.Value) error {
	if e.csv == nil {
		return e.json.value(v, false)
	}
	s, err := e.json.valueField(v.Value)
	if err != nil {
		return fmt.Errorf("value of %q: %w", v.Key, err)
	}
	e.row[0], e.row[1], e.row[2], e.row[3], e.row[4] = formatTime(v.Datetime), clean(v.Key), s, "", ""
	if v.Geo != nil {
		e.row[3] = strconv.FormatFloat(v.Geo.Lat, 'f', -1, 64)
		e.row[4] = strconv.FormatFloat(v.Geo.Long, 'f', -1, 64)
	}
	return e.csv.Write(e.row)
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

// progress redraws one line on stderr when stderr is a terminal, and says
// nothing otherwise: piped or redirected stderr stays clean.
type progress struct {
	w     io.Writer
	on    bool
	start time.Time
}

func newProgress(stderr io.Writer) *progress {
	return &progress{w: stderr, on: isTerminal(stderr), start: time.Now()}
}

func (p *progress) update(n int, oldest time.Time) {
	if p.on {
		fmt.Fprintf(p.w, "\r%d values, back to %s\033[K", n, oldest.UTC().Format(time.RFC3339))
	}
}

func (p *progress) clear() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func (p *progress) done(n int) {
	if p.on {
		fmt.Fprintf(p.w, "\r%d values in %s\033[K\n", n, time.Since(p.start).Round(time.Millisecond))
	}
}
