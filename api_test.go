package thethings_test

import (
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestAPIDocs checks what `go doc -all .` shows: every exported name is
// listed once and has a doc comment, no doc names a source file (a reader
// of the docs has no files), and no two exported names differ by one letter
// (a misspelling waiting to be picked), plurals of the same noun aside
// (Setting and Settings).
func TestAPIDocs(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	dir, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, fi := range dir {
		if fi.IsDir() || !strings.HasSuffix(fi.Name(), ".go") || strings.HasSuffix(fi.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, fi.Name(), nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	p, err := doc.NewFromFiles(fset, files, "github.com/thethings-go/thethings")
	if err != nil {
		t.Fatal(err)
	}
	type entry struct{ name, doc string }
	var entries []entry
	values := func(vs []*doc.Value) {
		for _, v := range vs {
			for _, spec := range v.Decl.Specs {
				vs := spec.(*ast.ValueSpec)
				d := v.Doc
				if vs.Doc != nil {
					d += vs.Doc.Text()
				}
				if vs.Comment != nil {
					d += vs.Comment.Text()
				}
				for _, n := range vs.Names {
					if n.IsExported() {
						entries = append(entries, entry{n.Name, d})
					}
				}
			}
		}
	}
	funcs := func(prefix string, fs []*doc.Func) {
		for _, f := range fs {
			entries = append(entries, entry{prefix + f.Name, f.Doc})
		}
	}
	values(p.Consts)
	values(p.Vars)
	funcs("", p.Funcs)
	for _, typ := range p.Types {
		entries = append(entries, entry{typ.Name, typ.Doc})
		values(typ.Consts)
		values(typ.Vars)
		funcs("", typ.Funcs)
		funcs(typ.Name+".", typ.Methods)
	}
	fileName := regexp.MustCompile(`\b[a-z_]+\.go\b`)
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.name] {
			t.Errorf("%s is listed twice", e.name)
		}
		seen[e.name] = true
		if strings.TrimSpace(e.doc) == "" {
			t.Errorf("%s has no doc comment", e.name)
		}
		if m := fileName.FindString(e.doc); m != "" {
			t.Errorf("the doc of %s names the source file %s", e.name, m)
		}
	}
	if m := fileName.FindString(p.Doc); m != "" {
		t.Errorf("the package doc names the source file %s", m)
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	// Pairs the v0.2 contract names; any other pair is a new trap.
	contract := map[string]bool{"WriteOption WriterOption": true, "Writer.Stats WriterStats": true}
	for i, a := range names {
		for _, b := range names[i+1:] {
			if oneLetterApart(a, b) && a+"s" != b && b+"s" != a && !contract[a+" "+b] {
				t.Errorf("%s and %s differ by one letter", a, b)
			}
		}
	}
}

// oneLetterApart reports whether a and b differ by one letter: one
// replaced, inserted or deleted, ignoring case.
func oneLetterApart(a, b string) bool {
	if a == b {
		return false
	}
	a, b = strings.ToLower(a), strings.ToLower(b)
	if len(a) > len(b) {
		a, b = b, a
	}
	if len(b)-len(a) > 1 || a == b {
		return a == b // differ in case only
	}
	i := 0
	for i < len(a) && a[i] == b[i] {
		i++
	}
	if len(a) == len(b) {
		return a[i+1:] == b[i+1:]
	}
	return a[i:] == b[i+1:]
}

func TestOneLetterApart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"WriteOption", "WriterOption", true}, {"Subscribe", "Subcribe", true}, {"Read", "Reed", true},
		{"Value", "value", true}, {"Read", "Write", false}, {"Values", "Value", true}, {"Geo", "Geo", false},
		{"ErrNotFound", "ErrNoToken", false},
	} {
		if got := oneLetterApart(tc.a, tc.b); got != tc.want {
			t.Errorf("%s %s: %v", tc.a, tc.b, got)
		}
	}
}

// TestErrorsHaveOnePrefix: the package builds its errors with errorf,
// which keeps one "thethings: " however many errors are wrapped; a
// fmt.Errorf would repeat the prefix of the errors it wraps.
func TestErrorsHaveOnePrefix(t *testing.T) {
	t.Parallel()
	dir, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, fi := range dir {
		name := fi.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			if strings.Contains(line, "fmt.Errorf(") {
				t.Errorf("%s:%d: fmt.Errorf: use errorf", name, i+1)
			}
		}
	}
}
