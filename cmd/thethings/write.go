package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/thethings-go/thethings"
)

// Batching of write's JSON lines: a request carries up to batchSize values
// and leaves at the latest batchWait after its first line arrived, so a
// slow producer (a sensor piped in) is not held back.
const (
	batchSize = 100
	batchWait = 500 * time.Millisecond
	maxLine   = 1 << 20
)

func runWrite(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "write")
	clientFlags(e, fs)
	at := fs.String("at", "", "when the value was taken: now, a duration ago (90m), 2006-01-02, 20060102150405 or ISO 8601 (default: the platform's clock)")
	geo := fs.String("geo", "", "where it was taken: LAT,LONG")
	asJSON := fs.Bool("json", false, "refuse a VALUE that is not JSON instead of storing it as a string")
	pos, err := parse(fs, args, 0, 2)
	if err != nil {
		return err
	}
	if len(pos) == 1 {
		return usageErr("missing VALUE after KEY %q (or give no arguments and JSON lines on stdin)", pos[0])
	}
	if len(pos) == 0 {
		if *at != "" || *geo != "" || *asJSON {
			return usageErr("-at, -geo and -json are for KEY VALUE; JSON lines carry their own datetime and geo")
		}
		if isTerminal(e.stdin) {
			return usageErr("missing KEY VALUE, or JSON lines on stdin")
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		return writeLines(ctx, c, e.stdin)
	}

	val, err := parseValue(pos[1], *asJSON)
	if err != nil {
		return err
	}
	v := thethings.Value{Key: pos[0], Value: val}
	if *at != "" {
		if v.Datetime, err = parseTime(*at, time.Now()); err != nil {
			return usageErr("-at: %v", err)
		}
	}
	if *geo != "" {
		g, err := parseGeo(*geo)
		if err != nil {
			return usageErr("-geo: %v", err)
		}
		v.Geo = &g
	}
	if err := checkValue(v); err != nil {
		return err
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	if err := c.Write(ctx, []thethings.Value{v}); err != nil {
		return err
	}
	if s, ok := val.(string); ok && looksNumeric(s) {
		fmt.Fprintf(e.stderr, "thethings write: stored %s as a string, not a number (a number is written like 21.5; -json refuses what is not JSON)\n", clean(strconv.Quote(s)))
	}
	return nil
}

// line is one parsed input line, or the error that ends the input.
type line struct {
	n   int
	v   thethings.Value
	err error
}

// writeLines writes the JSON lines of r in batches. A bad line stops the
// input before its batch is sent; the error says which lines were written.
func writeLines(ctx context.Context, c *thethings.Client, r io.Reader) error {
	lines := make(chan line)
	stop := make(chan struct{})
	defer close(stop)
	go readLines(r, lines, stop)

	var (
		batch             []thethings.Value
		first             int // line number of batch[0]
		last              int // last line read
		written           int // values written
		lastWrittenLine   int
		timer             *time.Timer
		timeout           <-chan time.Time
		inputErr          error
		inputDone         bool
		flushWhenPossible bool
	)
	flush := func() error {
		if timer != nil {
			timer.Stop()
			timer, timeout = nil, nil
		}
		if len(batch) == 0 {
			return nil
		}
		err := c.Write(ctx, batch)
		if err != nil {
			return writeFailure(err, first, last, written, lastWrittenLine, len(batch))
		}
		written += len(batch)
		lastWrittenLine = last
		batch = batch[:0]
		return nil
	}
	for !inputDone {
		select {
		case l, ok := <-lines:
			if !ok {
				inputDone = true
				break
			}
			if l.err != nil {
				inputErr, inputDone = l.err, true
				break
			}
			if len(batch) == 0 {
				first = l.n
				timer = time.NewTimer(batchWait)
				timeout = timer.C
			}
			batch = append(batch, l.v)
			last = l.n
			flushWhenPossible = len(batch) >= batchSize
		case <-timeout:
			flushWhenPossible = true
		case <-ctx.Done():
			return fmt.Errorf("interrupted: %d values written (lines 1..%d), the rest not sent: %w", written, lastWrittenLine, ctx.Err())
		}
		if flushWhenPossible && !inputDone {
			flushWhenPossible = false
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if inputErr != nil {
		what := fmt.Sprintf("%d values written (lines 1..%d), nothing after them", written, lastWrittenLine)
		if timer != nil {
			timer.Stop()
		}
		if written == 0 {
			what = "nothing written"
		}
		var ue *usageError
		if errors.As(inputErr, &ue) {
			return usageErr("%v; %s", inputErr, what)
		}
		return fmt.Errorf("reading stdin: %w; %s", inputErr, what)
	}
	return flush()
}

// writeFailure describes a failed batch and what was written before it.
func writeFailure(err error, first, last, written, lastWrittenLine, n int) error {
	fate := "not written"
	var we *thethings.WriteError
	if errors.As(err, &we) && we.Unknown {
		fate = "perhaps written (outcome unknown)"
	}
	return fmt.Errorf("lines %d..%d (%d values) %s: %w; %d values written before them (lines 1..%d), nothing after them sent",
		first, last, n, fate, err, written, lastWrittenLine)
}

// readLines parses r's JSON lines onto out until r ends, a line is bad, or
// stop is closed.
func readLines(r io.Reader, out chan<- line, stop <-chan struct{}) {
	defer close(out)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	send := func(l line) bool {
		select {
		case out <- l:
			return true
		case <-stop:
			return false
		}
	}
	n := 0
	for sc.Scan() {
		n++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		v, err := parseLine(b)
		if err != nil {
			send(line{n: n, err: usageErr("line %d: %s", n, strings.TrimPrefix(err.Error(), "thethings: "))})
			return
		}
		if !send(line{n: n, v: v}) {
			return
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = usageErr("line %d: longer than %d bytes", n+1, maxLine)
		}
		send(line{n: n + 1, err: err})
	}
}

// parseLine reads {"key":..,"value":..,"datetime":..,"geo":{"lat":..,"long":..}}.
func parseLine(b []byte) (thethings.Value, error) {
	var l struct {
		Key      *string         `json:"key"`
		Value    json.RawMessage `json:"value"`
		Datetime *string         `json:"datetime"`
		Geo      *geoJSON        `json:"geo"`
	}
	if b[0] != '{' && json.Valid(b) {
		return thethings.Value{}, fmt.Errorf(`want one JSON object {"key":..,"value":..} a line, not %s`, jsonKind(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return thethings.Value{}, lineError(err)
	}
	if dec.More() {
		return thethings.Value{}, errors.New("more than one JSON value on the line")
	}
	if l.Key == nil || l.Value == nil {
		return thethings.Value{}, errors.New(`"key" and "value" are required`)
	}
	v := thethings.Value{Key: *l.Key, Value: l.Value}
	if l.Datetime != nil {
		t, err := parseTime(*l.Datetime, time.Now())
		if err != nil {
			return thethings.Value{}, fmt.Errorf("datetime: %v", err)
		}
		v.Datetime = t
	}
	if l.Geo != nil {
		if l.Geo.Lat == nil || l.Geo.Long == nil {
			return thethings.Value{}, errors.New(`geo needs "lat" and "long"`)
		}
		v.Geo = &thethings.Geo{Lat: *l.Geo.Lat, Long: *l.Geo.Long}
	}
	return v, checkValue(v)
}

// jsonKind names what the line b holds instead of an object.
func jsonKind(b []byte) string {
	switch b[0] {
	case '[':
		return "an array (put each value on a line of its own)"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// lineError says what is wrong with a line in the terms of the input, not
// of the Go types it is decoded into.
func lineError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := "a number"
		switch te.Type.Kind() {
		case reflect.String:
			want = "a string"
		case reflect.Struct, reflect.Pointer:
			want = "an object"
		}
		return fmt.Errorf("%q must be %s, not %s", te.Field, want, te.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if strings.HasPrefix(msg, "unknown field") {
		return fmt.Errorf(`%s (want "key", "value", "datetime", "geo")`, msg)
	}
	return fmt.Errorf(`not a JSON object {"key":..,"value":..,"datetime":..,"geo":{"lat":..,"long":..}}: %s`, msg)
}

// isTerminal reports whether r or w is a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	fi, err := file.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
