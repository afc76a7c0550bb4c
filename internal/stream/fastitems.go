package stream

import (
	"encoding/json"
)

// fastItems decodes a data frame of the platform's usual shape without
// reflection: an array of objects whose fields are "key" (a string),
// "value", "datetime" (a string or null) and "geo" (an object or null),
// each at most once, with keys and datetimes free of escapes. It reports
// false for anything else, valid or not, and the caller then uses
// encoding/json, so the two paths always agree (FuzzDecodeItems checks it).
func fastItems(b []byte) ([]Item, bool) {
	p := itemParser{b: b}
	p.ws()
	if !p.eat('[') {
		return nil, false
	}
	p.ws()
	if p.eat(']') {
		p.ws()
		return []Item{}, p.i == len(b)
	}
	n := 1
	for _, c := range b { // upper bound of the item count, to allocate once
		if c == '}' {
			n++
		}
	}
	items := make([]Item, 0, n)
	for {
		p.ws()
		it, ok := p.item()
		if !ok {
			return nil, false
		}
		items = append(items, it)
		p.ws()
		if p.eat(',') {
			continue
		}
		if !p.eat(']') {
			return nil, false
		}
		p.ws()
		return items, p.i == len(b)
	}
}

type itemParser struct {
	b []byte
	i int
}

func (p *itemParser) ws() {
	for p.i < len(p.b) && isSpace(p.b[p.i]) {
		p.i++
	}
}

func (p *itemParser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// plain reads a string without escapes or non-ASCII bytes and returns its
// content, which aliases the input.
func (p *itemParser) plain() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.i
	for ; p.i < len(p.b); p.i++ {
		switch c := p.b[p.i]; {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return nil, false
		}
	}
	return nil, false
}

func (p *itemParser) item() (Item, bool) {
	var it Item
	if !p.eat('{') {
		return it, false
	}
	p.ws()
	if p.eat('}') {
		return it, true
	}
	var seen uint8
	for {
		p.ws()
		name, ok := p.plain()
		if !ok {
			return it, false
		}
		p.ws()
		if !p.eat(':') {
			return it, false
		}
		p.ws()
		var bit uint8
		switch string(name) {
		case "key":
			bit = 1
			s, ok := p.plain()
			if !ok {
				return it, false
			}
			it.Key = string(s)
		case "value":
			bit = 2
			v, ok := p.value()
			if !ok {
				return it, false
			}
			it.Value = v
		case "datetime":
			bit = 4
			if p.literal("null") {
				break
			}
			s, ok := p.plain()
			if !ok {
				return it, false
			}
			if t, ok := parseISOMillis(s); ok {
				it.Time = t
			} else {
				it.RawTime = string(s)
			}
		case "geo":
			bit = 8
			if p.literal("null") {
				break
			}
			g, ok := p.geo()
			if !ok {
				return it, false
			}
			it.Geo = g
		default:
			return it, false
		}
		if seen&bit != 0 {
			return it, false
		}
		seen |= bit
		p.ws()
		if p.eat(',') {
			continue
		}
		return it, p.eat('}')
	}
}

func (p *itemParser) literal(lit string) bool {
	if len(p.b)-p.i >= len(lit) && string(p.b[p.i:p.i+len(lit)]) == lit {
		p.i += len(lit)
		return true
	}
	return false
}

// value reads any JSON value as encoding/json with UseNumber would decode
// it into an interface.
func (p *itemParser) value() (any, bool) {
	if p.i >= len(p.b) {
		return nil, false
	}
	switch c := p.b[p.i]; {
	case c == '-' || c >= '0' && c <= '9':
		start := p.i
		if !p.number() {
			return nil, false
		}
		return json.Number(p.b[start:p.i]), true
	case c == '"':
		if s, ok := p.plain(); ok {
			return string(s), true
		}
		return nil, false
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '{' || c == '[':
		end, ok := compositeEnd(p.b, p.i)
		if !ok {
			return nil, false
		}
		var iv itemValue
		if iv.UnmarshalJSON(p.b[p.i:end]) != nil {
			return nil, false
		}
		p.i = end
		return iv.v, true
	}
	return nil, false
}

// number reads a JSON number: -?(0|[1-9]\\d*)(\\.\\d+)?([eE][+-]?\\d+)?
func (p *itemParser) number() bool {
	b := p.b
	p.eat('-')
	switch {
	case p.i < len(b) && b[p.i] == '0':
		p.i++
	case p.i < len(b) && b[p.i] >= '1' && b[p.i] <= '9':
		p.digits()
	default:
		return false
	}
	if p.eat('.') {
		if p.digits() == 0 {
			return false
		}
	}
	if p.i < len(b) && (b[p.i] == 'e' || b[p.i] == 'E') {
		p.i++
		if !p.eat('+') {
			p.eat('-')
		}
		if p.digits() == 0 {
			return false
		}
	}
	return true
}

func (p *itemParser) digits() int {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i - start
}

// geo reads {"lat":n,"long":n} in either order, each at most once.
func (p *itemParser) geo() (*Geo, bool) {
	end, ok := compositeEnd(p.b, p.i)
	if !ok || p.b[p.i] != '{' {
		return nil, false
	}
	var g Geo
	if json.Unmarshal(p.b[p.i:end], &g) != nil {
		return nil, false
	}
	p.i = end
	return &g, true
}

// compositeEnd returns the end of the object or array that starts at
// b[i], tracking depth, strings and escapes (not validating).
func compositeEnd(b []byte, i int) (int, bool) {
	depth, inStr, esc := 0, false, false
	for ; i < len(b); i++ {
		c := b[i]
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		}
	}
	return 0, false
}
