package thethingstest

import (
	"bytes"
	"encoding/json"
	"strings"
)

// maxDepth bounds nesting: a $settings path has at most maxDepth segments
// and a written value at most maxDepth levels of arrays and objects. It is
// checked by counting, before anything is split or decoded, so no request
// can make the server recurse (or allocate) in proportion to its nesting.
const maxDepth = 32

// $settings is kept as one compact JSON object, as it was written, not as a
// decoded tree: a decoded tree costs tens of times the bytes of its JSON,
// and every read would copy it. A read of $settings answers the bytes; a
// read or write of a path decodes only the objects along the path.

// settingsPath splits "$settings.a.b" into ["a","b"]; ok is false when key
// is not a well-formed settings path (non-empty segments of key chars) or
// has more than maxDepth segments.
func settingsPath(key string) (path []string, ok bool) {
	rest, found := strings.CutPrefix(key, magicSettings+".")
	if !found || strings.Count(rest, ".") >= maxDepth {
		return nil, false
	}
	path = strings.Split(rest, ".")
	for _, p := range path {
		if !validPlainKey(p) {
			return nil, false
		}
	}
	return path, true
}

// tooDeepPath reports whether key is a $settings path refused only for
// having more than maxDepth segments.
func tooDeepPath(key string) bool {
	rest, ok := strings.CutPrefix(key, magicSettings+".")
	return ok && strings.Count(rest, ".") >= maxDepth
}

// jsonDepth returns how deeply arrays and objects nest in the valid JSON b.
func jsonDepth(b []byte) int {
	depth, deepest := 0, 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i) - 1
		case '[', '{':
			depth++
			deepest = max(deepest, depth)
		case ']', '}':
			depth--
		}
	}
	return deepest
}

// stringEnd returns the index just past the JSON string that starts at
// b[i] (a quote), or len(b) if it does not end.
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// The stored document is compact JSON (no whitespace), so its members can
// be found by scanning: a read decodes nothing and a path write copies the
// objects along the path, keeping every other byte as it was.

// member returns the span [start, end) of the value of the last member
// named key in the compact JSON object obj (the one a decoder keeps).
func member(obj []byte, key string) (start, end int, ok bool) {
	eachMember(obj, func(name []byte, vs, ve int) {
		if string(name[1:len(name)-1]) == key || (bytes.IndexByte(name, '\\') >= 0 && unquoted(name) == key) {
			start, end, ok = vs, ve, true
		}
	})
	return start, end, ok
}

// eachMember calls fn with each member's quoted name and the span of its
// value in the compact JSON object obj, in order.
func eachMember(obj []byte, fn func(name []byte, start, end int)) {
	if len(obj) < 2 || obj[0] != '{' {
		return
	}
	for i := 1; i < len(obj) && obj[i] == '"'; {
		k := skipValue(obj, i)
		if k >= len(obj) || obj[k] != ':' {
			return // not compact JSON: no member here
		}
		vs := k + 1 // after ':'
		ve := skipValue(obj, vs)
		fn(obj[i:k], vs, ve)
		i = ve + 1 // after ','
	}
}

// unquoted returns the JSON string b (quotes included) as a Go string.
func unquoted(b []byte) string {
	if len(b) >= 2 && bytes.IndexByte(b, '\\') < 0 {
		return string(b[1 : len(b)-1])
	}
	var s string
	_ = json.Unmarshal(b, &s)
	return s
}

// skipValue returns the index just past the compact JSON value at b[i].
func skipValue(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i) - 1
			if depth == 0 {
				return i + 1
			}
		case '[', '{':
			depth++
		case ']', '}':
			if depth == 0 {
				return i // the end of the enclosing value
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

// getPath returns the value at path in the settings document doc.
func getPath(doc []byte, path []string) (json.RawMessage, bool) {
	for _, p := range path {
		s, e, ok := member(doc, p)
		if !ok {
			return nil, false
		}
		doc = doc[s:e]
	}
	return doc, true
}

// setPath returns a new document: doc with the value at path set to v,
// creating (or replacing non-object) intermediate objects. Its recursion is
// bounded by len(path) <= maxDepth.
func setPath(doc []byte, path []string, v []byte) json.RawMessage {
	if len(doc) < 2 || doc[0] != '{' {
		doc = []byte("{}")
	}
	s, e, ok := member(doc, path[0])
	if len(path) > 1 {
		var cur []byte
		if ok {
			cur = doc[s:e]
		}
		v = setPath(cur, path[1:], v)
	}
	out := make([]byte, 0, len(doc)+len(path[0])+len(v)+4)
	if ok {
		out = append(append(append(out, doc[:s]...), v...), doc[e:]...)
		return out
	}
	out = append(out, doc[:len(doc)-1]...)
	if len(doc) > 2 {
		out = append(out, ',')
	}
	out = append(append(out, '"'), path[0]...) // a plain key: nothing to escape
	out = append(append(append(out, '"', ':'), v...), '}')
	return out
}
