package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/thethings-go/thethings"
)

// parseValue reads a VALUE argument: JSON when it is valid JSON, else the
// string itself.
func parseValue(s string) any {
	if b := bytes.TrimSpace([]byte(s)); len(b) > 0 && json.Valid(b) {
		return json.RawMessage(b)
	}
	return s
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

// parseGeo reads "LAT,LONG" in degrees.
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
	g := thethings.Geo{Lat: lat, Long: long}
	return g, checkGeo(g)
}

func checkGeo(g thethings.Geo) error {
	switch {
	case math.IsNaN(g.Lat) || math.IsNaN(g.Long) || math.IsInf(g.Lat, 0) || math.IsInf(g.Long, 0):
		return fmt.Errorf("position %v,%v is not a number", g.Lat, g.Long)
	case g.Lat < -90 || g.Lat > 90:
		return fmt.Errorf("latitude %v outside [-90, 90]", g.Lat)
	case g.Long < -180 || g.Long > 180:
		return fmt.Errorf("longitude %v outside [-180, 180]", g.Long)
	}
	return nil
}

// checkKey applies the platform's key rules (letters, digits, '.', '-',
// '_'), so that a bad key in the input stops it before its batch is sent.
// The SDK checks again before any request.
func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("empty key")
	}
	for i := 0; i < len(key); i++ {
		b := key[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '-' || b == '_') {
			return fmt.Errorf("key %q: character %q not allowed (letters, digits, '.', '-', '_')", key, b)
		}
	}
	return nil
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

// jsonLine returns v as a JSON line's fields.
func jsonLine(v thethings.Value) (valueLine, error) {
	raw, err := json.Marshal(v.Value)
	if err != nil {
		return valueLine{}, fmt.Errorf("value of %q: %w", v.Key, err)
	}
	l := valueLine{Key: v.Key, Value: raw}
	if !v.Datetime.IsZero() {
		l.Datetime = formatTime(v.Datetime)
	}
	if v.Geo != nil {
		lat, long := v.Geo.Lat, v.Geo.Long
		l.Geo = &geoJSON{Lat: &lat, Long: &long}
	}
	return l, nil
}

// text returns v's value as one CSV field: strings as they are, numbers as
// the platform sent them, null as "", objects and arrays as JSON.
func text(val any) (string, error) {
	switch x := val.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	}
	b, err := json.Marshal(val)
	return string(b), err
}
