package stream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/thethings-go/thethings/internal/wire"
)

// Item is one value of a data frame: {"key":..,"value":..[,"datetime":..][,"geo":..]}.
// Time is "datetime" when it is in the platform's own form, ISO 8601 UTC
// ("2006-01-02T15:04:05.000Z"); RawTime holds any other form for the
// caller to parse. Both are zero when the item has no datetime.
type Item = wire.Item

// Geo is an item's position.
type Geo = wire.Geo

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

// DecodeEach decodes a data frame like DecodeItems, but item by item when
// the frame as a whole does not decode: the items that decode are
// returned, in order, with an error counting those that do not. A frame
// whose array structure itself is broken gives the items before the break.
func DecodeEach(frame []byte) ([]Item, error) {
	items, err := DecodeItems(frame)
	if err == nil {
		return items, nil
	}
	items = items[:0]
	bad := 0
	var first error
	i := wire.SkipWS(frame, 0)
	if i >= len(frame) || frame[i] != '[' {
		return nil, err
	}
	i = wire.SkipWS(frame, i+1)
	var one []byte
	for i < len(frame) && frame[i] != ']' {
		end, serr := wire.SkipValue(frame, i)
		if serr != nil {
			bad++
			if first == nil {
				first = serr
			}
			break
		}
		one = append(append(append(one[:0], '['), frame[i:end]...), ']')
		got, ierr := DecodeItems(one)
		if ierr != nil {
			bad++
			if first == nil {
				first = ierr
			}
		} else {
			items = append(items, got...)
		}
		i = wire.SkipWS(frame, end)
		if i < len(frame) && frame[i] == ',' {
			i = wire.SkipWS(frame, i+1)
		} else if i >= len(frame) || frame[i] != ']' {
			bad++
			if first == nil {
				first = fmt.Errorf("stream: data frame: malformed array at offset %d", i)
			}
			break
		}
	}
	if bad == 0 {
		return items, err // the array holds what DecodeItems refused: keep its verdict
	}
	return items, fmt.Errorf("stream: data frame: %d item(s) not decoded: %w", bad, first)
}

// fastItems decodes a data frame of the platform's usual shape without
// reflection (see wire.Decoder). It reports false for anything else, valid
// or not, and the caller then uses encoding/json, so the two paths always
// agree (FuzzDecodeItems checks it).
func fastItems(frame []byte) ([]Item, bool) {
	var d wire.Decoder
	items, err := d.Decode(frame, 0)
	return items, err == nil
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
	if t, ok := wire.ParseISOMillis(b[1 : len(b)-1]); ok {
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
