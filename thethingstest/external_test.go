package thethingstest

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// userTest is what a user of the SDK writes in their own module: the test
// server started with the test, the SDK pointed at it, ground truth
// checked.
const userTest = `package mydevice

import (
	"context"
	"testing"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

func TestReportsTemperature(t *testing.T) {
	srv := thethingstest.NewServer(t)
	token := srv.Tokens()[0]
	c, err := thethings.NewClient(token, thethings.WithBaseURL(srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Write(context.Background(), []thethings.Value{{Key: "temperature", Value: 21.5}})
	if err != nil {
		t.Fatal(err)
	}
	got := srv.Stored(token, "temperature")
	if len(got) != 1 || string(got[0].Value) != "21.5" {
		t.Fatalf("stored %+v, want one 21.5", got)
	}
	if srv.Requests(thethingstest.RouteWrite) != 1 || srv.Duplicates() != 0 {
		t.Fatalf("%d writes, %d duplicates", srv.Requests(thethingstest.RouteWrite), srv.Duplicates())
	}
}
`

// Another module can use the package: a module made in a temporary
// directory, with this one as a replaced dependency, runs the test above
// with the go command. It works offline, from the module cache.
func TestUsableFromAnotherModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds another module with the go command")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	out, err := exec.Command(goCmd, "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/mydevice\n\ngo 1.25\n\n" +
			"require github.com/thethings-go/thethings v0.0.0\n\n" +
			"replace github.com/thethings-go/thethings => " + root + "\n",
		"go.sum":           string(sum),
		"mydevice_test.go": userTest,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(goCmd, "test", "-count=1", "-v", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GOFLAGS=-mod=mod", // fill go.mod's requirements from the module cache
		"GOPROXY=off",      // offline: only what the cache holds
		"GOSUMDB=off",
		"GOWORK=off",
		"GOTOOLCHAIN=local",
	)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test in another module: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "--- PASS: TestReportsTemperature") {
		t.Fatalf("the user's test did not run:\n%s", b)
	}
}

// The examples are programs to copy: nothing under examples/ may import a
// package internal to this module.
func TestExamplesImportNoInternalPackage(t *testing.T) {
	dir := filepath.Join("..", "examples")
	n := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			n++
			if strings.Contains(imp.Path.Value, "/internal/") || strings.HasSuffix(imp.Path.Value, `/internal"`) {
				t.Errorf("%s imports %s", path, imp.Path.Value)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no example found")
	}
}
