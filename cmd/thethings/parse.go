package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/wire"
)

// parseValue reads a VALUE argument: JSON when it is valid JSON, else the
// string itself; with strict, what is not JSON is refused.
func parseValue(s string, strict bool) (any, error) {
	if b := bytes.TrimSpace([]byte(s)); len(b) > 0 && json.Valid(b) {
		return json.RawMessage(b), nil
	}
	if strict {
		return nil, usageErr("VALUE %q is not JSON (a string is written with its quotes: '\"...\"')", s)
	}
	return s, nil
}

// looksNumeric reports whether s, stored as a string, was probably meant
// as a number: 21,5 (a decimal comma), 1e, +3.
func looksNumeric(s string) bool {
	s = strings.TrimSpace(s)
	if s == "" || !strings.ContainsAny(s[:1], "+-.0123456789") {
		return false
	}
	return strings.Trim(s, "+-.,eE0123456789 ") == ""
}

// parseTime reads a TIME argument: "now"; a duration, meaning that long
// before now ("90m", "24h"); a date (2024-05-01, midnight UTC); or any form
// thethings.ParseTime knows (20240501123000, 2024-05-01T12:30:00Z, ...).
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now.UTC(), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("time %q: a duration means that long ago and must not be negative", s)
		}
		return now.Add(-d).UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := thethings.ParseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want now, a duration (24h), a date (2006-01-02), 20060102150405 or ISO 8601", s)
	}
	if t.Year() < 1 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("time %q: outside the years 1..9999", s)
	}
	return t, nil
}

// parseGeo reads "LAT,LONG" in degrees; the SDK checks the range.
func parseGeo(s string) (thethings.Geo, error) {
	latS, longS, ok := strings.Cut(s, ",")
	if !ok {
		return thethings.Geo{}, fmt.Errorf("position %q: want LAT,LONG (41.39,2.17)", s)
	}
	lat, err1 := strconv.ParseFloat(strings.TrimSpace(latS), 64)
	long, err2 := strconv.ParseFloat(strings.TrimSpace(longS), 64)
	if err1 != nil || err2 != nil {
		return thethings.Geo{}, fmt.Errorf("position %q: want LAT,LONG in decimal degrees (41.39,2.17)", s)
	}
	return thethings.Geo{Lat: lat, Long: long}, nil
}

// checkValue applies the SDK's own rules for a value (key, JSON, position,
// datetime), so that a bad one is refused with what is wrong before its
// batch is sent; Write checks the same again.
func checkValue(v thethings.Value) error {
	return wire.CheckItem(v.Key, v.Value, (*wire.Geo)(v.Geo), v.Datetime)
}

// formatTime is how values' times are printed: ISO 8601 UTC with
// milliseconds, the platform's precision.
func formatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// valueLine is one value as a JSON line: the input of write and the output
// of read -format jsonl and tail.
type valueLine struct {
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value"`
	Datetime string          `json:"datetime,omitempty"`
	Geo      *geoJSON        `json:"geo,omitempty"`
	Backfill bool            `json:"backfill,omitempty"`
}

type geoJSON struct {
	Lat  *float64 `json:"lat"`
	Long *float64 `json:"long"`
}

// jsonWriter prints JSON safe for a terminal (see appendSafeJSON), one
// document a line.
type jsonWriter struct {
	w   io.Writer
	buf bytes.Buffer
	enc *json.Encoder
	out []byte
}

func newJSONWriter(w io.Writer) *jsonWriter {
	j := &jsonWriter{w: w}
	j.enc = json.NewEncoder(&j.buf)
	j.enc.SetEscapeHTML(false)
	return j
}

// marshal returns v as safe JSON, without a newline, valid until the next
// call.
func (j *jsonWriter) marshal(v any) ([]byte, error) {
	j.buf.Reset()
	if err := j.enc.Encode(v); err != nil {
		return nil, err
	}
	j.out = appendSafeJSON(j.out[:0], bytes.TrimSuffix(j.buf.Bytes(), []byte("\n")))
	return j.out, nil
}

// line prints v as one line of safe JSON.
func (j *jsonWriter) line(v any) error {
	b, err := j.marshal(v)
	if err != nil {
		return err
	}
	_, err = j.w.Write(append(b, '\n'))
	return err
}

// valueLine prints v as a JSON line.
func (j *jsonWriter) value(v thethings.Value, backfill bool) error {
	raw, err := json.Marshal(v.Value)
	if err != nil {
		return fmt.Errorf("value of %q: %w", v.Key, err)
	}
	l := valueLine{Key: v.Key, Value: raw, Backfill: backfill}
	if !v.Datetime.IsZero() {
		l.Datetime = formatTime(v.Datetime)
	}
	if v.Geo != nil {
		lat, long := v.Geo.Lat, v.Geo.Long
		l.Geo = &geoJSON{Lat: &lat, Long: &long}
	}
	return j.line(l)
}

// valueField returns v's value as safe JSON for a CSV field, so that a
// string ("21.5", quoted) and a number (21.5) differ: numbers as the
// platform sent them, null as null.
func (j *jsonWriter) valueField(val any) (string, error) {
	if n, ok := val.(json.Number); ok {
		return n.String(), nil
	}
	b, err := j.marshal(val)
	return string(b), err
}
