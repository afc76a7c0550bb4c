package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/thethingstest"
)

// Hostile strings a device holding the token, or the platform, may send.
const (
	osc52    = "\x1b]52;c;cm0gLXJmIH4K\x07" // write the clipboard
	title    = "\x1b]0;pwned\x07"           // set the window title
	clear    = "\x1b[2J\x1b[H"              // clear the screen
	csiC1    = "\u009b31m"                  // CSI as one C1 character
	bidi     = "\u202eevil"                 // right-to-left override
	hostile  = osc52 + title + clear + csiC1 + "\x07\x7f" + bidi
	rawC1    = "\x9b31m" // CSI as a lone byte, not UTF-8
	htmlPage = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n" +
		"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

// rawAt returns the index of the first character of s a terminal must not
// get raw: any C0 control (but a newline when s is lines of output), DEL,
// a C1 control (U+0080–U+009F), a bidirectional override or isolate, or a
// byte that is not UTF-8; -1 if none.
func rawAt(s string, lines bool) int {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r < 0x20 && (r != '\n' || !lines) || r == 0x7f || r >= 0x80 && r <= 0x9f ||
			r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 ||
			r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// TestNothingRawReachesTheTerminal writes values holding ESC sequences
// (OSC 52, title, clear screen), BEL, DEL, a C1 CSI and a bidi override
// through the SDK, and checks every output of read (each format), tail and
// settings: escaped, never raw; the JSON outputs still decode to the
// values written.
func TestNothingRawReachesTheTerminal(t *testing.T) {
	srv, tok := setup(t)
	c, err := thethings.NewClient(tok, thethings.WithBaseURL(srv.URL()))
	require.NoError(t, err)
	ctx := context.Background()
	p := start(t, srv.URL(), tok, "tail", "-n", "2")
	require.True(t, testkit.Eventually(t, "the tail subscribed", func() bool { return srv.OpenSubscriptions() == 1 }))
	require.NoError(t, c.Write(ctx, []thethings.Value{{Key: "evil", Value: hostile}}))
	require.NoError(t, c.Write(ctx, []thethings.Value{{Key: "evil", Value: map[string]any{hostile: []any{hostile}}}}))
	require.NoError(t, c.SetSettings(ctx, map[string]any{"name" + hostile: hostile}))

	var tail []string
	for range 2 {
		tail = append(tail, p.next(t))
	}
	assert.Equal(t, 0, p.wait(t), p.stderr.String())
	assert.Equal(t, -1, rawAt(strings.Join(tail, "\n"), true), "tail: %q", tail)
	var first valueLine
	require.NoError(t, json.Unmarshal([]byte(tail[0]), &first))
	var got string
	require.NoError(t, json.Unmarshal(first.Value, &got))
	assert.Equal(t, hostile, got, "escaped JSON means the same")

	r := cli(t, srv.URL(), tok, "", "read", "evil")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, -1, rawAt(r.stdout+r.stderr, true), "read csv: %q", r.stdout+r.stderr)
	assert.Contains(t, r.stdout, `\u001b]52;c;`)
	assert.Contains(t, r.stdout, `\u009b31m`)

	r = cli(t, srv.URL(), tok, "", "read", "evil", "-format", "jsonl")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, -1, rawAt(r.stdout+r.stderr, true), "read jsonl: %q", r.stdout+r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2)
	var l valueLine
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &l))
	var obj map[string][]string
	require.NoError(t, json.Unmarshal(l.Value, &obj))
	assert.Equal(t, map[string][]string{hostile: {hostile}}, obj)

	for _, args := range [][]string{{"settings"}, {"settings", "get", "name"}} {
		r = cli(t, srv.URL(), tok, "", args...)
		assert.Equal(t, -1, rawAt(r.stdout+r.stderr, true), "%v: %q", args, r.stdout+r.stderr)
	}
	r = cli(t, srv.URL(), tok, "", "settings")
	require.Equal(t, 0, r.code, r.stderr)
	var settings map[string]string
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &settings))
	assert.Equal(t, map[string]string{"name" + hostile: hostile}, settings)
}

// TestHostilePlatformReachesNoTerminalRaw: what a hostile platform sends
// (keys, values, thing ids, error messages) is escaped in every output,
// errors included, and an error is one short line.
func TestHostilePlatformReachesNoTerminalRaw(t *testing.T) {
	// A platform whose every string holds control characters: read
	// answers, activation, error messages in the platform's envelope and
	// as a bare (not UTF-8) body, and a proxy's HTML page.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, "/v2/")
		enc := func(status int, v any) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(v)
		}
		switch {
		case r.Method == http.MethodPost && path == "things/":
			enc(http.StatusCreated, map[string]string{"status": "created", "thingToken": "token-from-activation", "thingId": "id" + hostile})
		case strings.Contains(path, "/resources/k-"):
			enc(http.StatusOK, []map[string]any{{"key": "k-" + hostile, "value": hostile, "datetime": "2024-05-01T00:00:00.000Z"}})
		case strings.Contains(path, "/resources/"):
			enc(http.StatusBadRequest, map[string]string{"status": "error", "message": "bad" + hostile})
		case strings.HasPrefix(path, "utils/date") && strings.Contains(r.URL.RawQuery, "thingToken=tok-proxy"):
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprint(w, htmlPage)
		case strings.HasPrefix(path, "utils/date"):
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, "oops"+hostile+rawC1)
		default:
			enc(http.StatusUnauthorized, map[string]string{"status": "error", "message": "refused" + hostile + rawC1})
		}
	}))
	t.Cleanup(srv.Close)
	url := srv.URL + "/v2/"

	t.Run("escaped", func(t *testing.T) {
		for _, args := range [][]string{
			{"read", "k-x"},
			{"read", "k-x", "-format", "jsonl"},
			{"read", "other"},
			{"activate", "code"},
			{"time"},
			{"tail"},
			{"geo"},
			{"settings"},
			{"write", "k", "1"},
		} {
			r := cli(t, url, "tok", "", args...)
			assert.Equal(t, -1, rawAt(r.stdout+r.stderr, true), "%v: %q", args, r.stdout+r.stderr)
		}
		r := cli(t, url, "tok", "", "read", "k-x")
		assert.Contains(t, r.stdout, `k-\x1b]52;c;cm0gLXJmIH4K\x07`, "keys are escaped visibly")
		r = cli(t, url, "", "", "activate", "code")
		require.Equal(t, 0, r.code, r.stderr)
		assert.Contains(t, r.stderr, `thing id\x1b]52;c;`)
		r = cli(t, url, "tok", "", "time")
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, `\x9b31m`, "a byte that is not UTF-8 is shown as its value")
	})

	// A proxy's HTML page in an answer becomes one short line of stderr.
	t.Run("errors are one line", func(t *testing.T) {
		r := cli(t, url, "tok-proxy", "", "time")
		assert.Equal(t, 1, r.code)
		assert.Equal(t, 1, strings.Count(r.stderr, "\n"), "%q", r.stderr)
		assert.Contains(t, r.stderr, "502 Bad Gateway: <html> <head>")
		assert.LessOrEqual(t, utf8.RuneCountInString(r.stderr), maxErrorLine+len("thethings time: \n"))
		assert.Equal(t, -1, rawAt(r.stdout+r.stderr, true), "%q", r.stdout+r.stderr)

		long := strings.Repeat("x", 5000) + "\nthe end"
		assert.Equal(t, maxErrorLine+utf8.RuneCountInString(" … "), utf8.RuneCountInString(errorLine(long)))
		assert.True(t, strings.HasSuffix(errorLine(long), "x the end"), "the end of a long message stays")
	})
}

func TestCleanEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, ünïcode ✓": "plain text, ünïcode ✓",
		"a\x1b[2Jb":             `a\x1b[2Jb`,
		"bel\x07 del\x7f":       `bel\x07 del\x7f`,
		"csi\u009bm":            `csi\u009bm`,
		"byte\x9bm":             `byte\x9bm`,
		"tab\tnl\n":             `tab\x09nl\x0a`,
		"\u202eabc":             `\u202eabc`,
	} {
		assert.Equal(t, want, clean(in), "%q", in)
	}
	js := appendSafeJSON(nil, []byte("{\"a\u009b\x7f\":\"\u202e\x9b\"}\n"))
	assert.Equal(t, `{"a\u009b\u007f":"\u202e\ufffd"}`+"\n", string(js))
	var m map[string]string
	require.NoError(t, json.Unmarshal(js, &m))
	assert.Equal(t, map[string]string{"a\u009b\x7f": "\u202e\ufffd"}, m)
}

// TestCSVTellsStringsFromNumbers: CSV's value column is JSON, so "21,5"
// written by mistake shows as the string it is; write -json refuses it.
func TestCSVTellsStringsFromNumbers(t *testing.T) {
	srv, tok := setup(t)
	r := cli(t, srv.URL(), tok, "", "write", "-json", "temperature", "21,5")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, `VALUE "21,5" is not JSON`)
	assert.Zero(t, srv.StoredCount(tok, "temperature"), "refused before any request")

	r = cli(t, srv.URL(), tok, "", "write", "temperature", "21,5")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, `stored "21,5" as a string, not a number`)
	for _, v := range []string{"21.5", `"21.5"`, "null", "true"} {
		r = cli(t, srv.URL(), tok, "", "write", "-json", "temperature", v)
		require.Equal(t, 0, r.code, r.stderr)
		assert.Empty(t, r.stderr, "no note for JSON")
	}
	r = cli(t, srv.URL(), tok, "", "read", "temperature")
	require.Equal(t, 0, r.code, r.stderr)
	assert.ElementsMatch(t, []string{"true", `"21,5"`, "21.5", `"21.5"`, "null"}, csvValues(t, r.stdout, true))

	r = cli(t, "", "", "", "read", "-h")
	assert.Contains(t, r.stdout, "the value column is JSON")
}

// TestNothingThereExits3: a setting, a position or a key that is not
// there is status 3, not the 1 of a failure; an empty window is success.
func TestNothingThereExits3(t *testing.T) {
	srv, tok := setup(t)
	for _, args := range [][]string{{"settings", "get", "nope"}, {"geo"}, {"read", "never"}} {
		r := cli(t, srv.URL(), tok, "", args...)
		assert.Equal(t, 3, r.code, "%v: %s", args, r.stderr)
		assert.Empty(t, r.stdout, args)
	}
	seed(t, srv, tok, "k", 3)
	r := cli(t, srv.URL(), tok, "", "read", "k", "-since", "2030-01-01")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "datetime,key,value,lat,long\n", r.stdout, "a window without values: the header alone")

	r = cli(t, srv.URL(), "no-such-thing", "", "settings", "get", "nope")
	assert.Equal(t, 1, r.code, "an unknown thing is a refusal, not nothing there: %s", r.stderr)
	r = cli(t, "", "", "", "help")
	assert.Contains(t, r.stdout, "3 no such value")
}

// TestReadAdvisesRerunOnlyWhenItMayHelp: a refused token is not worth
// running again; a network failure is.
func TestReadAdvisesRerunOnlyWhenItMayHelp(t *testing.T) {
	srv, _ := setup(t)
	r := cli(t, srv.URL(), "no-such-thing", "", "read", "k")
	assert.Equal(t, 1, r.code)
	assert.NotContains(t, r.stderr, "again", r.stderr)
	assert.NotContains(t, r.stderr, "resume", r.stderr)

	// The connection closes with no answer.
	srv, tok := setup(t)
	srv.SetFaults(thethingstest.Faults{DropBeforeBodyEvery: 1})
	r = cli(t, srv.URL(), tok, "", "read", "k")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "run the same command again")
}

// TestWriteStdinSaysWhatWasExpected: input that is not one object a line
// gets an answer in the input's terms, with its line number.
func TestWriteStdinSaysWhatWasExpected(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`[{"key":"k","value":1},{"key":"k","value":2}]`, "line 1: want one JSON object {\"key\":..,\"value\":..} a line, not an array (put each value on a line of its own)"},
		{`"k"`, "line 1: want one JSON object"},
		{`{"key":5,"value":1}`, `line 1: "key" must be a string, not number`},
		{`{"key":"k","value":1,"geo":{"lat":"north","long":1}}`, `line 1: "geo.lat" must be a number, not string`},
		{`{"key":"k","value":1,"geo":[1,2]}`, `line 1: "geo" must be an object, not array`},
	} {
		r := refused(t, c.in+"\n", c.want, "write")
		assert.NotContains(t, r.stderr, "Go value", c.in)
		assert.NotContains(t, r.stderr, "struct", c.in)
	}
}

// TestRulesAreTheSDKs: the CLI refuses and accepts what the SDK does,
// and names a character, not a byte.
func TestRulesAreTheSDKs(t *testing.T) {
	refused(t, "", `character 'é' not allowed`, "read", "café")
	refused(t, "", `character 'é' not allowed`, "tail", "-keys", "café")
	refused(t, "", `character 'é' not allowed`, "settings", "get", "café")
	refused(t, "", `character 'é' not allowed`, "write", "café", "1")
	refused(t, `{"key":"café","value":1}`, `line 1: key "café": character 'é' not allowed`, "write")
	srv, tok := setup(t)
	r := cli(t, srv.URL(), tok, "", "write", "$settings.interval", "30")
	require.Equal(t, 0, r.code, "a magic key, as Write takes it: %s", r.stderr)
	assert.Equal(t, map[string]any{"interval": 30.0}, srv.Settings(tok))
}

func TestVersion(t *testing.T) {
	r := cli(t, "", "", "", "version")
	require.Equal(t, 0, r.code, r.stderr)
	assert.True(t, strings.HasPrefix(r.stdout, "thethings "), r.stdout)
	assert.Contains(t, r.stdout, "module github.com/thethings-go/thethings")
	assert.Contains(t, r.stdout, "SDK "+thethings.Version)
	assert.Contains(t, r.stdout, runtime.Version())
	assert.Equal(t, 1, strings.Count(r.stdout, "\n"))
	refused(t, "", "unexpected argument", "version", "x")
}
