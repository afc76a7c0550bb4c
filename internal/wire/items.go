package wire

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
)

// Item is one decoded item.
type Item struct {
	Key   string
	Value any // as encoding/json with UseNumber decodes into any
	// Time is "datetime" when it is in the platform's own form (see
	// ParseISOMillis), or as Decoder.ParseTime parsed it. RawTime holds
	// any other form when there is no ParseTime. Both are zero when the
	// item has no datetime.
	Time    time.Time
	RawTime string
	Geo     *Geo
}

// Geo is an item's position.
type Geo struct {
	Lat  float64 `json:"lat"`
	Long float64 `json:"long"`
}

// Decoder decodes JSON arrays of items, objects with the members "key" (a
// string), "value", "datetime" (a string) and "geo" (an object with "lat"
// and "long", or null), by the rules of the platform's answers: other
// members are skipped, a member given twice takes its last value (except
// that a null geo leaves an earlier one), escaped names are decoded, and
// every item must have a datetime string unless OptionalTime. Errors wrap
// ErrSyntax.
//
// Number and plain string literals are not allocated one by one: they are
// cut from one string per call.
type Decoder struct {
	// Key is the key of an item that has none. An item whose key equals
	// it shares the string.
	Key string
	// OptionalTime accepts items without a datetime or
	// with a null one, as subscription frames carry.
	OptionalTime bool
	// ParseTime, if set, parses a datetime string that is not in the
	// platform's own form; its error fails the call.
	ParseTime func(string) (time.Time, error)
	// Reuse keeps the decoder's buffers from call to call: the returned
	// items and the Geos they point to are overwritten by the next call.
	// Literals are then copied to the call's string, so that a value kept
	// by the caller holds no more than the page's literals. Without Reuse
	// every call returns fresh memory and literals are cut from one copy
	// of the input.
	Reuse bool
	// Fingerprint makes Decode compute the Fingerprints of the items.
	Fingerprint bool
	// Max, if positive, ends decoding after Max items: what follows them
	// is not looked at, so an answer longer than asked for (or cut after
	// them) costs nothing more.
	Max int

	items []Item
	fps   []uint64
	lits  []lit
	geos  []Geo
	arena []byte
	whole string // the input as a string, without Reuse

	compact bytes.Buffer
}

// litKind says where an item's Value comes from.
type litKind uint8

const (
	litNone   litKind = iota // Value already set
	litNumber                // json.Number in the arena
	litString                // string in the arena
)

// lit places a literal of an item in the arena (with Reuse).
type lit struct {
	kind     litKind
	off, end int32
	key      bool // the key is arena[keyOff:keyEnd]
	keyOff   int32
	keyEnd   int32
	geo      int32 // index in geos, or -1
}

// Decode decodes b, a JSON array of items; hint is the expected number of
// items (0: count them). The slice is valid until the next call with Reuse.
func (d *Decoder) Decode(b []byte, hint int) ([]Item, error) {
	if hint <= 0 {
		hint = 1
		for _, c := range b { // an upper bound, to allocate once
			if c == '}' {
				hint++
			}
		}
	}
	if d.Reuse {
		if cap(d.items) < hint {
			d.items, d.lits = make([]Item, 0, hint), make([]lit, 0, hint)
			d.arena = make([]byte, 0, min(len(b)/4, 64<<10))
		}
		d.items, d.lits, d.geos, d.arena = d.items[:0], d.lits[:0], d.geos[:0], d.arena[:0]
	} else {
		d.items, d.whole = make([]Item, 0, hint), ""
	}
	d.fps = d.fps[:0]
	if d.Fingerprint && cap(d.fps) < hint {
		d.fps = make([]uint64, 0, hint)
	}
	i := SkipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, syntaxErr(b, i)
	}
	i = SkipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			var err error
			if i, err = d.item(b, i); err != nil {
				return nil, err
			}
			if len(d.items) == d.Max {
				if d.Reuse {
					d.place()
				}
				return d.items, nil
			}
			i = SkipWS(b, i)
			if i < len(b) && b[i] == ',' {
				i = SkipWS(b, i+1)
				continue
			}
			if i < len(b) && b[i] == ']' {
				i++
				break
			}
			return nil, syntaxErr(b, i)
		}
	}
	if SkipWS(b, i) != len(b) {
		return nil, syntaxErr(b, i)
	}
	if d.Reuse {
		d.place()
	}
	return d.items, nil
}

// Fingerprints returns, with Fingerprint set, the fingerprint of each item
// of the last call's result, in order. The slice is reused by the next call.
func (d *Decoder) Fingerprints() []uint64 { return d.fps }

// place sets the literals and geos of the items (with Reuse).
func (d *Decoder) place() {
	var arena string
	if len(d.arena) > 0 {
		arena = string(d.arena)
	}
	for j := range d.items {
		l, it := &d.lits[j], &d.items[j]
		switch l.kind {
		case litNumber:
			it.Value = json.Number(arena[l.off:l.end])
		case litString:
			it.Value = arena[l.off:l.end]
		}
		if l.key {
			it.Key = arena[l.keyOff:l.keyEnd]
		}
		if l.geo >= 0 {
			it.Geo = &d.geos[l.geo]
		}
	}
}

// text returns the literal b[start:end] as a string cut from the call's
// copy of the input (without Reuse).
func (d *Decoder) text(b []byte, start, end int) string {
	if d.whole == "" {
		d.whole = string(b)
	}
	return d.whole[start:end]
}

// stash copies the literal b[start:end] to the arena and returns its place.
func (d *Decoder) stash(b []byte, start, end int) (off, stop int32) {
	off = int32(len(d.arena))
	d.arena = append(d.arena, b[start:end]...)
	return off, int32(len(d.arena))
}

// Member bits, for duplicates.
const (
	hasKey = 1 << iota
	hasValue
	hasTime
	hasGeo
)

// item decodes the object starting at b[i].
func (d *Decoder) item(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '{' {
		return i, syntaxErr(b, i)
	}
	it := Item{Key: d.Key}
	l := lit{geo: -1}
	var valStart, valEnd int
	var geo Geo
	var seen uint8
	i = SkipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return i, syntaxErr(b, i)
			}
			nameEnd, escaped, _, err := ScanString(b, i)
			if err != nil {
				return i, err
			}
			name := b[i+1 : nameEnd-1]
			if escaped {
				var s string
				if json.Unmarshal(b[i:nameEnd], &s) != nil {
					return i, syntaxErr(b, i)
				}
				name = []byte(s)
			}
			i = SkipWS(b, nameEnd)
			if i >= len(b) || b[i] != ':' {
				return i, syntaxErr(b, i)
			}
			i = SkipWS(b, i+1)
			end, err := SkipValue(b, i)
			if err != nil {
				return i, err
			}
			var bit uint8
			switch string(name) {
			case "key":
				bit = hasKey
				if err := d.key(b, i, end, &it, &l); err != nil {
					return i, err
				}
			case "value":
				bit = hasValue
				valStart, valEnd = i, end
				if err := d.value(b, i, end, &it, &l); err != nil {
					return i, err
				}
			case "datetime":
				bit = hasTime
				if err := d.datetime(b, i, end, &it); err != nil {
					return i, err
				}
			case "geo":
				bit = hasGeo
				if b[i] == 'n' {
					break
				}
				if geo, err = parseGeo(b[i:end]); err != nil {
					return i, err
				}
				if d.Reuse {
					l.geo = 0 // placed below
				} else {
					g := geo
					it.Geo = &g
				}
			}
			seen |= bit
			i = SkipWS(b, end)
			if i < len(b) && b[i] == ',' {
				i = SkipWS(b, i+1)
				continue
			}
			if i < len(b) && b[i] == '}' {
				i++
				break
			}
			return i, syntaxErr(b, i)
		}
	}
	if !d.OptionalTime && seen&hasTime == 0 {
		return i, Errorf("thethings: read answer item without datetime: %w", ErrSyntax)
	}
	if l.geo >= 0 {
		l.geo = int32(len(d.geos))
		d.geos = append(d.geos, geo)
	}
	if d.Fingerprint {
		var g *Geo
		if l.geo >= 0 || it.Geo != nil {
			g = &geo
		}
		d.fps = append(d.fps, d.fingerprint(b[valStart:valEnd], g))
	}
	d.items = append(d.items, it)
	if d.Reuse {
		d.lits = append(d.lits, l)
	}
	return i, nil
}

// key decodes the string at b[i:end] as the item's key.
func (d *Decoder) key(b []byte, i, end int, it *Item, l *lit) error {
	if b[i] != '"' {
		return syntaxErr(b, i)
	}
	l.key = false
	raw := b[i+1 : end-1]
	if string(raw) == d.Key {
		it.Key = d.Key
		return nil
	}
	_, escaped, ascii, _ := ScanString(b, i)
	switch {
	case !escaped && ascii && !d.Reuse:
		it.Key = d.text(b, i+1, end-1)
	case !escaped && ascii:
		l.key = true
		l.keyOff, l.keyEnd = d.stash(b, i+1, end-1)
	default:
		var k string
		if json.Unmarshal(b[i:end], &k) != nil {
			return syntaxErr(b, i)
		}
		it.Key = k
	}
	return nil
}

// value decodes the value at b[i:end] into it.Value, or records in l a
// literal placed later.
func (d *Decoder) value(b []byte, i, end int, it *Item, l *lit) error {
	l.kind = litNone
	it.Value = nil
	switch c := b[i]; {
	case c == '"':
		_, escaped, ascii, _ := ScanString(b, i)
		switch {
		case escaped || !ascii:
			var s string
			if json.Unmarshal(b[i:end], &s) != nil {
				return syntaxErr(b, i)
			}
			it.Value = s
		case d.Reuse:
			l.kind = litString
			l.off, l.end = d.stash(b, i+1, end-1)
		default:
			it.Value = d.text(b, i+1, end-1)
		}
	case c == '-' || c >= '0' && c <= '9':
		if d.Reuse {
			l.kind = litNumber
			l.off, l.end = d.stash(b, i, end)
		} else {
			it.Value = json.Number(d.text(b, i, end))
		}
	case c == 't':
		it.Value = true
	case c == 'f':
		it.Value = false
	case c == 'n':
	default: // object or array
		dec := json.NewDecoder(bytes.NewReader(b[i:end]))
		dec.UseNumber()
		var x any
		if err := dec.Decode(&x); err != nil {
			return Errorf("thethings: read answer value: %w: %w", err, ErrSyntax)
		}
		it.Value = x
	}
	return nil
}

// datetime decodes the datetime at b[i:end].
func (d *Decoder) datetime(b []byte, i, end int, it *Item) error {
	if b[i] == 'n' && d.OptionalTime {
		it.Time, it.RawTime = time.Time{}, ""
		return nil
	}
	if b[i] != '"' {
		return syntaxErr(b, i)
	}
	it.Time, it.RawTime = time.Time{}, ""
	if t, ok := ParseISOMillis(b[i+1 : end-1]); ok {
		it.Time = t
		return nil
	}
	var s string
	if json.Unmarshal(b[i:end], &s) != nil {
		return syntaxErr(b, i)
	}
	if d.ParseTime == nil {
		it.RawTime = s
		return nil
	}
	t, err := d.ParseTime(s)
	if err != nil {
		return err
	}
	it.Time = t
	return nil
}

// parseGeo parses {"lat":..,"long":..}: other members are skipped, a
// repeated member wins and commas are not checked.
func parseGeo(b []byte) (Geo, error) {
	var g Geo
	if len(b) == 0 || b[0] != '{' {
		return g, syntaxErr(b, 0)
	}
	i := SkipWS(b, 1)
	hasLat, hasLong := false, false
	for i < len(b) && b[i] != '}' {
		if b[i] != '"' {
			return g, syntaxErr(b, i)
		}
		nameEnd, _, _, err := ScanString(b, i)
		if err != nil {
			return g, err
		}
		name := b[i+1 : nameEnd-1]
		i = SkipWS(b, nameEnd)
		if i >= len(b) || b[i] != ':' {
			return g, syntaxErr(b, i)
		}
		i = SkipWS(b, i+1)
		end, err := SkipValue(b, i)
		if err != nil {
			return g, err
		}
		switch string(name) {
		case "lat", "long":
			isLat := name[1] == 'a'
			f, err := strconv.ParseFloat(string(b[i:end]), 64)
			if err != nil {
				return g, Errorf("thethings: read answer geo %s: %w", name, ErrSyntax)
			}
			if isLat {
				g.Lat, hasLat = f, true
			} else {
				g.Long, hasLong = f, true
			}
		}
		i = SkipWS(b, end)
		if i < len(b) && b[i] == ',' {
			i = SkipWS(b, i+1)
		}
	}
	if !hasLat || !hasLong {
		return g, Errorf("thethings: read answer geo without lat and long: %w", ErrSyntax)
	}
	return g, nil
}

// fingerprint is FNV-64a over the value's compact JSON and the geo, which
// tells values of one millisecond apart. Cursors store it: it must not
// change. It is not the SDK's value identity (AppendCanonical): it hashes
// the value as the platform spells it, which is all one read needs, and
// cursors made by earlier versions hold it.
func (d *Decoder) fingerprint(raw []byte, g *Geo) uint64 {
	if len(raw) > 0 && (raw[0] == '{' || raw[0] == '[') {
		d.compact.Reset()
		if json.Compact(&d.compact, raw) == nil {
			raw = d.compact.Bytes()
		}
	}
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for _, c := range raw {
		h = (h ^ uint64(c)) * prime
	}
	if g != nil {
		var buf [17]byte
		buf[0] = 1
		putUint64(buf[1:], math.Float64bits(g.Lat))
		putUint64(buf[9:], math.Float64bits(g.Long))
		for _, c := range buf {
			h = (h ^ uint64(c)) * prime
		}
	}
	return h
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}
