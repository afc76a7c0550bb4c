package thethingstest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// decodeJSON decodes the valid JSON b, numbers kept exact.
func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

// FuzzSettings feeds the $settings path and depth handling arbitrary keys
// and JSON-ish bytes. settingsPath accepts only what splits back into the
// key, within maxDepth segments; jsonDepth never exceeds the brackets it
// saw and, on valid JSON, is the nesting encoding/json sees; skipValue
// stays within its input and spans a whole compact value; and a path write
// on a compact settings object gives a compact object in which the path
// reads back the value written, every other member is as it was, and the
// nesting is bounded by the document's and the path's plus the value's.
func FuzzSettings(f *testing.F) {
	deep := strings.Repeat(".a", maxDepth)
	f.Add("$settings.a.b", []byte(`{"a":{"c":1},"z":[true,null]}`), []byte(`[1,{"x":"y"}]`))
	f.Add("$settings"+deep, []byte(`{}`), []byte(`1`))
	f.Add("$settings"+deep+".a", []byte(`{}`), []byte(`1`))
	f.Add("$settings.a", []byte(`{"\u0061":{"b":1},"a":2}`), []byte(`"v"`))
	f.Add("$settings.a.b", []byte(`{"a":"}\"{[[","b":{"a":[]}}`), []byte(`{"q":"\\"}`))
	f.Add("$settings.a", []byte(`{"`), []byte(`1`)) // not JSON: the scan must stop, not panic
	f.Add("$settings.x", []byte(`[1,2]`), []byte(`null`))
	f.Add("$settings.x.y", []byte(`{"x":1.50e+10}`), []byte(strings.Repeat("[", maxDepth)+strings.Repeat("]", maxDepth)))
	f.Add("$settings..a", []byte(`{"a"`), []byte(`{"`))
	f.Add("$settings.", []byte(`]]]]{`), []byte(`"\`))
	f.Add("$settings", []byte(``), []byte(` { "a" : [ 1 , 2 ] } `))

	f.Fuzz(func(t *testing.T, key string, doc, v []byte) {
		path, ok := settingsPath(key)
		if ok {
			if len(path) == 0 || len(path) > maxDepth {
				t.Fatalf("settingsPath(%q): %d segments", key, len(path))
			}
			for _, p := range path {
				if !validPlainKey(p) || strings.Contains(p, ".") {
					t.Fatalf("settingsPath(%q): segment %q", key, p)
				}
			}
			if magicSettings+"."+strings.Join(path, ".") != key {
				t.Fatalf("settingsPath(%q) = %q: does not join back into the key", key, path)
			}
		}
		if tooDeepPath(key) && ok {
			t.Fatalf("settingsPath(%q) accepted a path tooDeepPath refuses", key)
		}

		var compact [2][]byte // doc and v compacted; nil if not valid JSON
		for n, b := range [][]byte{doc, v} {
			d := jsonDepth(b)
			if d < 0 || d > bytes.Count(b, []byte("["))+bytes.Count(b, []byte("{")) {
				t.Fatalf("jsonDepth(%q) = %d", b, d)
			}
			if json.Valid(b) {
				// The nesting encoding/json's tokenizer sees.
				dec := json.NewDecoder(bytes.NewReader(b))
				dec.UseNumber() // a number beyond float64 is valid JSON too
				depth, want := 0, 0
				for {
					tok, err := dec.Token()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						t.Fatalf("tokenizing valid JSON %s: %v", b, err)
					}
					switch tok {
					case json.Delim('['), json.Delim('{'):
						depth++
						want = max(want, depth)
					case json.Delim(']'), json.Delim('}'):
						depth--
					}
				}
				if d != want {
					t.Fatalf("jsonDepth(%s) = %d, encoding/json nests %d", b, d, want)
				}
			}
			for _, i := range []int{0, len(b) / 2, len(b)} {
				if e := skipValue(b, i); e < i || e > len(b) {
					t.Fatalf("skipValue(%q, %d) = %d", b, i, e)
				}
			}
			var buf bytes.Buffer
			if json.Compact(&buf, b) == nil {
				c := buf.Bytes()
				compact[n] = c
				if e := skipValue(c, 0); e != len(c) {
					t.Fatalf("skipValue(%s, 0) = %d, the value is %d bytes", c, e, len(c))
				}
			}
			if ok {
				getPath(b, path) // whatever the bytes: no panic
				setPath(b, path, []byte("1"))
			}
		}

		cd, cv := compact[0], compact[1]
		if !ok || cd == nil || cv == nil || jsonDepth(cv) > maxDepth {
			return // what the server refuses before it gets here
		}
		nd := setPath(cd, path, cv)
		var buf bytes.Buffer
		if json.Compact(&buf, nd) != nil || !bytes.Equal(buf.Bytes(), nd) {
			t.Fatalf("setPath(%s, %q, %s) = %s: not compact JSON", cd, path, cv, nd)
		}
		if got, found := getPath(nd, path); !found || !bytes.Equal(got, cv) {
			t.Fatalf("setPath(%s, %q, %s) = %s: the path reads %s (found %v)", cd, path, cv, nd, got, found)
		}
		if d, bound := jsonDepth(nd), max(jsonDepth(cd), len(path)+jsonDepth(cv)); d > bound {
			t.Fatalf("setPath(%s, %q, %s) = %s: nests %d, over %d", cd, path, cv, nd, d, bound)
		}
		after, ok := decodeJSON(t, nd).(map[string]any)
		if !ok {
			t.Fatalf("setPath(%s, %q, %s) = %s: not an object", cd, path, cv, nd)
		}
		var at any = after
		for i, p := range path {
			obj, isObj := at.(map[string]any)
			if !isObj {
				t.Fatalf("setPath(%s, %q, %s) = %s: %q is not an object", cd, path, cv, nd, path[:i])
			}
			at = obj[p]
		}
		if want := decodeJSON(t, cv); !reflect.DeepEqual(at, want) {
			t.Fatalf("setPath(%s, %q, %s) = %s: a decoder reads %v at the path, want %v", cd, path, cv, nd, at, want)
		}
		before, isObj := decodeJSON(t, cd).(map[string]any)
		if !isObj {
			return
		}
		for k, was := range before {
			if k != path[0] && !reflect.DeepEqual(after[k], was) {
				t.Fatalf("setPath(%s, %q, %s) = %s: member %q changed from %v to %v", cd, path, cv, nd, k, was, after[k])
			}
		}
		if len(after) != len(before) && len(after) != len(before)+1 {
			t.Fatalf("setPath(%s, %q, %s) = %s: %d members, was %d", cd, path, cv, nd, len(after), len(before))
		}
	})
}
