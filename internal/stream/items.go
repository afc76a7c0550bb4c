package stream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Item is one value of a data frame: {"key":..,"value":..[,"datetime":..][,"geo":..]}.
type Item struct {
	Key   string
	Value any // as encoding/json decodes into any, but numbers are json.Number
	// Time is "datetime" when it is in the platform's own form, ISO 8601
	// UTC ("2006-01-02T15:04:05.000Z"); RawTime holds any other form for the
	// caller to parse. Both are zero when the item has no datetime.
	Time    time.Time
	RawTime string
	Geo     *Geo
}

// Geo is an item's position.
type Geo struct {
	Lat  float64 `json:"lat"`
	Long float64 `json:"long"`
}

type wireItem struct {
	Key      string    `json:"key"`
	Value    itemValue `json:"value"`
	Datetime itemTime  `json:"datetime"`
	Geo      *Geo      `json:"geo"`
}

// DecodeItems decodes a data frame, a JSON array of items. Numbers keep
// their exact text as json.Number. The result is what encoding/json gives
// for the item struct; frames of the platform's usual shape take a
// hand-written path, anything else goes through encoding/json.
func DecodeItems(frame []byte) ([]Item, error) {
	if items, ok := fastItems(frame); ok {
		return items, nil
	}
	return slowItems(frame)
}

// slowItems decodes a data frame with encoding/json.
func slowItems(frame []byte) ([]Item, error) {
	var wire []wireItem
	if err := json.Unmarshal(frame, &wire); err != nil {
		return nil, fmt.Errorf("stream: data frame: %w", err)
	}
	items := make([]Item, len(wire))
	for i := range wire {
		w := &wire[i]
		items[i] = Item{Key: w.Key, Value: w.Value.v, Time: w.Datetime.t, RawTime: w.Datetime.raw, Geo: w.Geo}
	}
	return items, nil
}

// itemValue decodes a value as encoding/json with UseNumber would, without
// a Decoder for the common scalar cases.
type itemValue struct{ v any }

func (iv *itemValue) UnmarshalJSON(b []byte) error {
	switch c := b[0]; {
	case c == '-' || c >= '0' && c <= '9':
		iv.v = json.Number(b)
		return nil
	case c == '"':
		if s, ok := plainString(b); ok {
			iv.v = s
			return nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		iv.v = s
		return nil
	case c == 't':
		iv.v = true
		return nil
	case c == 'f':
		iv.v = false
		return nil
	case c == 'n':
		iv.v = nil
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(&iv.v)
}

// plainString returns the content of a quoted JSON string that holds only
// printable ASCII without escapes, which needs no decoding.
func plainString(b []byte) (string, bool) {
	if len(b) < 2 {
		return "", false
	}
	inner := b[1 : len(b)-1]
	for _, c := range inner {
		if c < 0x20 || c >= 0x80 || c == '\\' || c == '"' {
			return "", false
		}
	}
	return string(inner), true
}

// itemTime decodes "datetime".
type itemTime struct {
	t   time.Time
	raw string
}

func (it *itemTime) UnmarshalJSON(b []byte) error {
	if b[0] == 'n' {
		return nil
	}
	if b[0] != '"' {
		it.raw = string(b)
		return nil
	}
	if t, ok := parseISOMillis(b[1 : len(b)-1]); ok {
		it.t = t
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	it.raw = s
	return nil
}

// parseISOMillis parses "2006-01-02T15:04:05Z" with an optional fraction of
// up to 9 digits, without allocating.
func parseISOMillis(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	nsec := 0
	if rest := b[19 : len(b)-1]; len(rest) > 0 {
		if rest[0] != '.' || len(rest) < 2 || len(rest) > 10 {
			return time.Time{}, false
		}
		frac, ok := num(rest[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(rest) {
			frac *= 10
		}
		nsec = frac
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
