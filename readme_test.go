package thethings_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmeBlock is one fenced code block of the README.
type readmeBlock struct{ lang, body string }

// TestReadmeOwnModule follows the README's "Use it from your own module"
// literally, as a newcomer with a clone would: in a fresh directory next to
// the repository it runs the shell block that makes a module, saves the Go
// block where the text says, runs each of the two ways of pointing the
// module at the clone (go work; replace and go mod tidy), and checks that
// the program prints what the README says it prints. The go commands use
// the module proxy as configured (nothing is fetched when the module cache
// holds the dependencies, as after go test ./... here) and no checksum
// database. GOFLAGS is cleared: a workspace refuses -mod=mod, and the
// README's go mod tidy is what fills go.mod.
func TestReadmeOwnModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds another module with the go command")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no POSIX shell for the README's commands:", err)
	}
	out, err := exec.Command(goCmd, "env", "GOMOD", "GOPROXY").Output()
	if err != nil {
		t.Fatal(err)
	}
	goMod, goProxy, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	root := filepath.Dir(goMod)
	// The section, up to the next heading of its level or above, and its
	// fenced code blocks.
	const heading = "### Use it from your own module"
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q section", heading)
	}
	text = text[i+1+len(heading):]
	level := heading[:strings.IndexByte(heading, ' ')+1] // "### "
	for j := 0; j < len(text); {
		k := strings.Index(text[j:], "\n#")
		if k < 0 {
			break
		}
		j += k + 1
		if line := text[j:]; strings.HasPrefix(line, level) || strings.HasPrefix(line, level[1:]) {
			text = text[:j]
			break
		}
	}
	var blocks []readmeBlock
	for _, m := range regexp.MustCompile("(?ms)^```(\\w*)\n(.*?)^```$").FindAllStringSubmatch(text, -1) {
		blocks = append(blocks, readmeBlock{m[1], m[2]})
	}
	var langs []string
	for _, b := range blocks {
		langs = append(langs, b.lang)
	}
	if strings.Join(langs, " ") != "sh go sh sh text" {
		t.Fatalf("the section's code blocks are %q, want a module (sh), its main.go (go), two ways to use the clone (sh, sh) and the output (text)", langs)
	}
	setup, program, want := blocks[0].body, blocks[1].body, strings.TrimSpace(blocks[4].body)
	m := regexp.MustCompile("Save this as `([^`]+)`").FindStringSubmatch(text)
	if m == nil {
		t.Fatal("the section does not say where to save the program (Save this as `path`)")
	}
	mainPath := m[1]

	env := []string{"GOPROXY=" + goProxy, "GOSUMDB=off", "GOFLAGS=", "GOWORK=", "GOTOOLCHAIN=local"}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "THETHINGS_") && name != "GOFLAGS" && name != "GOWORK" && name != "GOPROXY" && name != "GOSUMDB" && name != "GOTOOLCHAIN" {
			env = append(env, kv)
		}
	}
	for i, name := range []string{"workspace", "replace"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			// The clone, named after the repository as git clone names it.
			if err := os.Symlink(root, filepath.Join(dir, "thethings")); err != nil {
				t.Fatal(err)
			}
			script := "set -e\n" + setup +
				"cat > \"$README_DIR/" + mainPath + "\" <<'README_EOF'\n" + program + "README_EOF\n" +
				blocks[2+i].body
			cmd := exec.Command("sh", "-c", script)
			cmd.Dir = dir
			cmd.Env = append(env, "README_DIR="+dir)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("the README's commands failed: %v\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", err, script, stdout.String(), stderr.String())
			}
			if got := strings.TrimSpace(stdout.String()); got != want {
				t.Fatalf("the program printed %q, the README says %q\nstderr:\n%s", got, want, stderr.String())
			}
		})
	}
}
