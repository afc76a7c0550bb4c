package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/mqtt"
	"github.com/thethings-go/thethings/thethingstest"
)

// bin is the CLI built once for all tests.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "thethings-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "thethings")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// result is what one run of the binary left.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs the built binary against baseURL with token (either may be "")
// and stdin, and waits for it.
func cli(t *testing.T, baseURL, token, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(testkit.Ctx(t, 30*time.Second), bin, args...)
	cmd.Env, _ = cliEnv(baseURL, token)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "run %v: %v", args, err)
		code = ee.ExitCode()
	}
	return result{stdout.String(), stderr.String(), code}
}

// cliEnv is the CLI's environment for baseURL and token (either may be
// ""): the variables of its process, and the same as run's getenv.
func cliEnv(baseURL, token string) (vars []string, getenv func(string) string) {
	m := map[string]string{"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME")}
	if baseURL != "" {
		m["THETHINGS_BASE_URL"] = baseURL
	}
	if token != "" {
		m["THETHINGS_TOKEN"] = token
	}
	for k, v := range m {
		vars = append(vars, k+"="+v)
	}
	return vars, func(k string) string { return m[k] }
}

// started is a running binary whose stdout is read line by line.
type started struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *syncBuffer
	done   chan struct{}
}

func start(t *testing.T, baseURL, token string, args ...string) *started {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env, _ = cliEnv(baseURL, token)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	s := &started{cmd: cmd, lines: make(chan string, 1000), stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = s.stderr
	require.NoError(t, cmd.Start())
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-s.done
			_ = cmd.Wait()
		}
	})
	return s
}

func (s *started) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-s.lines:
		require.True(t, ok, "output ended; stderr: %s", s.stderr.String())
		return l
	case <-time.After(10 * time.Second):
		t.Fatalf("no output line; stderr: %s", s.stderr.String())
		return ""
	}
}

// wait returns the exit status once the process ends.
func (s *started) wait(t *testing.T) int {
	t.Helper()
	for range s.lines {
	}
	<-s.done
	err := s.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	require.NoError(t, err)
	return 0
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// refused runs args against a test server and checks exit status 2, a
// message containing want, nothing on stdout and that no request was made.
func refused(t *testing.T, stdin, want string, args ...string) result {
	t.Helper()
	srv, tok := setup(t)
	r := cli(t, srv.URL(), tok, stdin, args...)
	assert.Equal(t, 2, r.code, "%v: stderr %q", args, r.stderr)
	assert.Contains(t, r.stderr, want, "%v", args)
	assert.Empty(t, r.stdout, "%v", args)
	for _, route := range thethingstest.Routes() {
		assert.Zero(t, srv.Requests(route), "%v: a request was made (%s)", args, route)
	}
	return r
}

// setup is the test server the CLI talks to, and its thing token.
func setup(t testing.TB) (*thethingstest.Server, string) {
	srv := thethingstest.NewServer(t)
	return srv, srv.Tokens()[0]
}

func TestUsage(t *testing.T) {
	r := cli(t, "", "", "")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "Usage: thethings")

	r = cli(t, "", "", "", "help")
	assert.Equal(t, 0, r.code)
	for _, c := range commands {
		assert.Contains(t, r.stdout, c.name)
	}

	r = cli(t, "", "", "", "frobnicate")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, `unknown command "frobnicate"`)

	r = cli(t, "", "", "", "read", "-h")
	assert.Equal(t, 0, r.code)
	assert.Equal(t, 1, strings.Count(r.stdout, "Usage: thethings read KEY"), r.stdout)
	assert.Contains(t, r.stdout, "-resume")
	assert.Equal(t, r, cli(t, "", "", "", "help", "read"))

	r = cli(t, "", "", "", "-token", "sentinel-token-value", "write", "-token", "sentinel-token-value", "-h")
	assert.Equal(t, 0, r.code)
	assert.NotContains(t, r.stdout+r.stderr, "sentinel-token-value", "-h shows no token as a default")

	r = cli(t, "", "", "", "read", "-nope", "k")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "flag provided but not defined: -nope")

	r = cli(t, "", "", "", "time")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "no thing token")

	srv, _ := setup(t)
	r = cli(t, srv.URL(), "two words", "", "time")
	assert.Equal(t, 2, r.code, r.stderr)
	assert.Contains(t, r.stderr, "invalid thing token")
	assert.NotContains(t, r.stderr, "two words")
	for _, route := range thethingstest.Routes() {
		assert.Zero(t, srv.Requests(route), "a request was made (%s)", route)
	}
}

func TestWrite(t *testing.T) {
	srv, tok := setup(t)
	ok := func(args ...string) {
		t.Helper()
		r := cli(t, srv.URL(), tok, "", append([]string{"write"}, args...)...)
		require.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
		assert.Empty(t, r.stdout)
	}
	ok("num", "21.5")
	ok("num", "-5", "-at", "2024-05-01T10:00:00Z", "-geo", "-33.9,151.2")
	ok("str", "hello world")
	ok("str", `"21.5"`)
	ok("obj", `{"a":[1,true]}`)

	// The JSON of each stored value.
	values := func(recs []thethingstest.Record) []string {
		var out []string
		for _, r := range recs {
			out = append(out, string(r.Value))
		}
		return out
	}
	num := srv.Stored(tok, "num")
	require.Len(t, num, 2)
	assert.ElementsMatch(t, []string{"21.5", "-5"}, values(num))
	for _, r := range num {
		if string(r.Value) == "-5" {
			assert.Equal(t, time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC), r.Datetime)
			require.NotNil(t, r.Geo)
			assert.Equal(t, thethingstest.Geo{Lat: -33.9, Long: 151.2}, *r.Geo)
		}
	}
	assert.ElementsMatch(t, []string{`"hello world"`, `"21.5"`}, values(srv.Stored(tok, "str")))
	assert.Equal(t, []string{`{"a":[1,true]}`}, values(srv.Stored(tok, "obj")))

	// The global flags work too, before the command or after it.
	r := cli(t, "", "", "", "-base-url", srv.URL(), "-token", tok, "write", "flags", "1")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, "", "", "", "write", "flags", "2", "-base-url", srv.URL(), "-token", tok)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, 2, srv.StoredCount(tok, "flags"))

	// An unknown token is the platform's answer: status 1.
	r = cli(t, srv.URL(), "no-such-thing", "", "write", "k", "1")
	assert.Equal(t, 1, r.code)
	assert.NotContains(t, r.stderr+r.stdout, "no-such-thing", "the token is never printed")
}

func TestWriteRefusesBadInput(t *testing.T) {
	refused(t, "", `character ' ' not allowed`, "write", "te mp", "1")
	refused(t, "", `no known magic resource`, "write", "$nope", "1")
	refused(t, "", `character 'é' not allowed`, "write", "tempé", "1")
	refused(t, "", "latitude 91 outside", "write", "k", "1", "-geo", "91,0")
	refused(t, "", "want LAT,LONG", "write", "k", "1", "-geo", "north")
	refused(t, "", `time "yesterday"`, "write", "k", "1", "-at", "yesterday")
	refused(t, "", "missing VALUE", "write", "k")
	refused(t, "", "too many arguments", "write", "k", "1", "2")
	refused(t, "", "-at, -geo and -json are for KEY VALUE", "write", "-at", "now")
	refused(t, "", "-at, -geo and -json are for KEY VALUE", "write", "-json")
}

func TestWriteStdin(t *testing.T) {
	srv, tok := setup(t)
	var in strings.Builder
	for i := range 250 {
		fmt.Fprintf(&in, `{"key":"lines","value":%d}`+"\n", i)
	}
	in.WriteString("\n") // blank lines are skipped
	in.WriteString(`{"key":"lines","value":{"x":"y"},"datetime":"20240501100000","geo":{"lat":41.39,"long":2.17}}` + "\n")
	r := cli(t, srv.URL(), tok, in.String(), "write")
	require.Equal(t, 0, r.code, r.stderr)
	stored := srv.Stored(tok, "lines")
	require.Len(t, stored, 251)
	oldest := stored[len(stored)-1]
	assert.Equal(t, `{"x":"y"}`, string(oldest.Value))
	assert.Equal(t, time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC), oldest.Datetime)
	assert.Equal(t, &thethingstest.Geo{Lat: 41.39, Long: 2.17}, oldest.Geo)

	// A bad line stops the input before its batch is sent.
	r = cli(t, srv.URL(), tok, `{"key":"bad","value":1}`+"\n"+`{"key":"b d","value":2}`+"\n", "write")
	assert.Equal(t, 2, r.code)
	assert.Contains(t, r.stderr, "line 2:")
	assert.Contains(t, r.stderr, "nothing written")
	assert.Zero(t, srv.StoredCount(tok, "bad"))
}

func TestWriteStdinRefusesBadLines(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"key":"k"}`, `"key" and "value" are required`},
		{`{"key":"k","value":1,"when":"now"}`, `unknown field "when"`},
		{`{"key":"k","value":1} {"key":"k","value":2}`, "more than one JSON value"},
		{`key=k value=1`, "not a JSON object"},
		{`{"key":"k","value":1,"datetime":"soon"}`, `time "soon"`},
		{`{"key":"k","value":1,"geo":{"lat":1}}`, `geo needs "lat" and "long"`},
		{`{"key":"k","value":1,"geo":{"lat":1,"long":181}}`, "longitude 181 outside"},
		{`{"key":"k","value":1,"datetime":"10000-01-01T00:00:00Z"}`, "datetime"},
	} {
		refused(t, `{"key":"k","value":0}`+"\n"+c.in+"\n", "line 2: ", "write")
		refused(t, c.in+"\n", c.want, "write")
	}
}

// seed stores n values of key, 0 to n-1, one a second from 2024-05-01,
// and returns them as read prints them: newest first.
func seed(t testing.TB, srv *thethingstest.Server, tok, key string, n int) (newestFirst []string) {
	t.Helper()
	recs := make([]thethingstest.Record, n)
	base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := range recs {
		recs[i] = thethingstest.Record{Value: json.RawMessage(fmt.Sprint(i)), Datetime: base.Add(time.Duration(i) * time.Second)}
		newestFirst = append(newestFirst, fmt.Sprint(n-1-i))
	}
	require.NoError(t, srv.Seed(tok, key, recs...))
	return newestFirst
}

// csvValues returns the value column of CSV output, checking the header.
func csvValues(t *testing.T, out string, header bool) []string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err)
	if header {
		require.NotEmpty(t, rows)
		require.Equal(t, []string{"datetime", "key", "value", "lat", "long"}, rows[0])
		rows = rows[1:]
	}
	var vals []string
	for _, r := range rows {
		vals = append(vals, r[2])
	}
	return vals
}

func TestRead(t *testing.T) {
	srv, tok := setup(t)
	want := seed(t, srv, tok, "temp", 2500)

	r := cli(t, srv.URL(), tok, "", "read", "temp")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, want, csvValues(t, r.stdout, true))
	assert.Empty(t, r.stderr, "no progress when stderr is not a terminal")
	assert.True(t, strings.HasPrefix(r.stdout, "datetime,key,value,lat,long\n2024-05-01T00:41:39.000Z,temp,2499,,\n"), r.stdout[:80])

	// A window: -since inclusive, -until exclusive.
	r = cli(t, srv.URL(), tok, "", "read", "temp", "-since", "2024-05-01T00:00:10Z", "-until", "20240501000020", "-format", "jsonl")
	require.Equal(t, 0, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 10)
	assert.JSONEq(t, `{"key":"temp","value":19,"datetime":"2024-05-01T00:00:19.000Z"}`, lines[0])
	assert.JSONEq(t, `{"key":"temp","value":10,"datetime":"2024-05-01T00:00:10.000Z"}`, lines[9])

	// -limit stops early and says how to go on; -resume goes on exactly there.
	r = cli(t, srv.URL(), tok, "", "read", "temp", "-limit", "1500")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, want[:1500], csvValues(t, r.stdout, true))
	_, cursor, found := strings.Cut(r.stderr, "-resume ")
	require.True(t, found, r.stderr)
	cursor = strings.Fields(cursor)[0]
	r = cli(t, srv.URL(), tok, "", "read", "temp", "-resume", cursor)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, want[1500:], csvValues(t, r.stdout, false), "a resumed read prints no second header")

	// A key never written: nothing there, status 3.
	r = cli(t, srv.URL(), tok, "", "read", "never")
	assert.Equal(t, 3, r.code)
	assert.Empty(t, r.stdout, "no header for a key that is not there")
	assert.Contains(t, r.stderr, "resource not found")
	assert.NotContains(t, r.stderr, "-resume")
}

func TestReadRefusesBadInput(t *testing.T) {
	refused(t, "", "want csv or jsonl", "read", "k", "-format", "xml")
	refused(t, "", `time "last week"`, "read", "k", "-since", "last week")
	refused(t, "", "is not before -until", "read", "k", "-since", "2024-05-02", "-until", "2024-05-01")
	refused(t, "", "must not be negative", "read", "k", "-limit", "-1")
	refused(t, "", `character '/' not allowed`, "read", "a/b")
	refused(t, "", "invalid cursor", "read", "k", "-resume", "not-a-cursor")
	refused(t, "", "missing argument", "read")
}

// TestReadResumesAfterInterrupt interrupts a slow read with SIGINT after its
// first page and resumes it from the cursor it printed: together the two
// outputs hold every value exactly once.
func TestReadResumesAfterInterrupt(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGINT")
	}
	srv, tok := setup(t)
	want := seed(t, srv, tok, "slow", 3500)
	srv.SetFaults(thethingstest.Faults{Latency: 500 * time.Millisecond})

	p := start(t, srv.URL(), tok, "read", "slow")
	assert.Equal(t, "datetime,key,value,lat,long", p.next(t))
	// The first page is in; any page asked for from now on waits for the
	// interrupt, however long the test takes to send it.
	srv.SetFaults(thethingstest.Faults{Latency: time.Hour})
	var first []string
	for range 1000 { // the first page, out before the second is asked for
		rec, err := csv.NewReader(strings.NewReader(p.next(t))).Read()
		require.NoError(t, err)
		first = append(first, rec[2])
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	for l := range p.lines {
		rec, err := csv.NewReader(strings.NewReader(l)).Read()
		require.NoError(t, err)
		first = append(first, rec[2])
	}
	assert.Equal(t, 1, p.wait(t), "an interrupted read is not a success")
	_, cursor, found := strings.Cut(p.stderr.String(), "-resume ")
	require.True(t, found, p.stderr.String())
	cursor = strings.Fields(cursor)[0]

	srv.SetFaults(thethingstest.Faults{})
	r := cli(t, srv.URL(), tok, "", "read", "slow", "-resume", cursor)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, want, append(first, csvValues(t, r.stdout, false)...))
}

func TestTail(t *testing.T) {
	srv, tok := setup(t)
	c, err := thethings.NewClient(tok, thethings.WithBaseURL(srv.URL()))
	require.NoError(t, err)
	ctx := context.Background()

	p := start(t, srv.URL(), tok, "tail", "-keys", "a,c", "-n", "3")
	require.True(t, testkit.Eventually(t, "the tail subscribed", func() bool { return srv.OpenSubscriptions() == 1 }))
	require.NoError(t, c.Write(ctx, []thethings.Value{{Key: "a", Value: 1}, {Key: "b", Value: 2}}))
	require.NoError(t, c.Write(ctx, []thethings.Value{{Key: "c", Value: "x", Geo: &thethings.Geo{Lat: 1, Long: 2}}}))
	require.NoError(t, c.Write(ctx, []thethings.Value{{Key: "a", Value: map[string]any{"z": true}}}))
	var got []map[string]any
	for range 3 {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(p.next(t)), &m))
		delete(m, "datetime")
		got = append(got, m)
	}
	assert.Equal(t, []map[string]any{
		{"key": "a", "value": 1.0},
		{"key": "c", "value": "x", "geo": map[string]any{"lat": 1.0, "long": 2.0}},
		{"key": "a", "value": map[string]any{"z": true}},
	}, got)
	assert.Equal(t, 0, p.wait(t), p.stderr.String())

	// Without -n it runs until interrupted, which is a normal end.
	require.True(t, testkit.Eventually(t, "the first tail's stream closes", func() bool { return srv.OpenSubscriptions() == 0 }))
	p = start(t, srv.URL(), tok, "tail")
	require.True(t, testkit.Eventually(t, "the tail subscribed", func() bool { return srv.OpenSubscriptions() == 1 }))
	require.NoError(t, c.Write(ctx, []thethings.Value{{Key: "b", Value: 7}}))
	assert.Contains(t, p.next(t), `"value":7`)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	assert.Equal(t, 0, p.wait(t), p.stderr.String())

	// An unknown token ends it with the platform's answer.
	r := cli(t, srv.URL(), "no-such-thing", "", "tail")
	assert.Equal(t, 1, r.code)
	assert.NotContains(t, r.stderr, "no-such-thing")
}

func TestTailRefusesBadInput(t *testing.T) {
	refused(t, "", "-backfill needs -keys", "tail", "-backfill")
	refused(t, "", `character '*' not allowed`, "tail", "-keys", "a,*")
	refused(t, "", "must not be negative", "tail", "-n", "-2")
	refused(t, "", "unexpected argument", "tail", "extra")
}

func TestSettings(t *testing.T) {
	srv, tok := setup(t)
	run := func(args ...string) result {
		return cli(t, srv.URL(), tok, "", append([]string{"settings"}, args...)...)
	}
	r := run("set", "alarm.max", "30")
	require.Equal(t, 0, r.code, r.stderr)
	r = run("set", "name", "boiler room")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, map[string]any{"alarm": map[string]any{"max": 30.0}, "name": "boiler room"}, srv.Settings(tok))

	r = run("get", "alarm.max")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "30\n", r.stdout)
	r = run()
	require.Equal(t, 0, r.code, r.stderr)
	assert.JSONEq(t, `{"alarm":{"max":30},"name":"boiler room"}`, r.stdout)

	r = run("get", "alarm.min")
	assert.Equal(t, 3, r.code, "nothing there")
	assert.Contains(t, r.stderr, "not found")
}

func TestSettingsRefusesBadInput(t *testing.T) {
	refused(t, "", "empty segment", "settings", "get", "a..b")
	refused(t, "", `character '$' not allowed`, "settings", "set", "a$", "1")
	refused(t, "", "usage: settings set PATH VALUE", "settings", "set", "a")
	refused(t, "", `unknown settings operation "del"`, "settings", "del", "a")
}

func TestGeo(t *testing.T) {
	srv, tok := setup(t)
	r := cli(t, srv.URL(), tok, "", "geo", "-33.86,151.21")
	require.Equal(t, 0, r.code, r.stderr)
	g, ok := srv.Location(tok)
	require.True(t, ok)
	assert.Equal(t, thethingstest.Geo{Lat: -33.86, Long: 151.21}, g)
	r = cli(t, srv.URL(), tok, "", "geo")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "-33.86,151.21\n", r.stdout)

	refused(t, "", "latitude -91 outside", "geo", "-91,0")
	refused(t, "", "want LAT,LONG", "geo", "here")
	refused(t, "", "too many arguments", "geo", "1,2", "3,4")
}

func TestTime(t *testing.T) {
	srv, tok := setup(t)
	r := cli(t, srv.URL(), tok, "", "time")
	require.Equal(t, 0, r.code, r.stderr)
	got, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(r.stdout))
	require.NoError(t, err, r.stdout)
	assert.WithinDuration(t, time.Now(), got, time.Minute)

	r = cli(t, srv.URL(), "no-such-thing", "", "time")
	assert.Equal(t, 1, r.code)
	assert.NotContains(t, r.stderr, "no-such-thing")

	refused(t, "", "unexpected argument", "time", "now")
}

func TestActivate(t *testing.T) {
	srv, _ := setup(t)
	srv.AddActivationCode(thethingstest.ActivationCode{Code: "code-1", ProductID: "p1"})
	r := cli(t, srv.URL(), "", "", "activate", "code-1", "-product", "p1")
	require.Equal(t, 0, r.code, r.stderr)
	token := strings.TrimSpace(r.stdout)
	assert.Contains(t, srv.Tokens(), token, "stdout is the new token, alone")
	assert.Contains(t, r.stderr, "shown only now")

	r = cli(t, srv.URL(), "", "", "activate", "code-1")
	assert.Equal(t, 1, r.code, "a used code")
	assert.Contains(t, r.stderr, "activation code not found")

	refused(t, "", "missing argument", "activate")
	refused(t, "", "empty activation code", "activate", " ")
}

func TestEmulator(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM")
	}
	p, info := startEmulator(t, "-tokens", "tok-a,tok-b", "-codes", "c1,c2:prod", "-mqtt", "-control")
	assert.Equal(t, []string{"tok-a", "tok-b"}, info.Tokens)
	assert.Equal(t, []struct{ Code, Product string }{{"c1", ""}, {"c2", "prod"}}, info.Codes)
	require.True(t, strings.HasPrefix(info.URL, "http://127.0.0.1:"), info.URL)
	require.True(t, strings.HasPrefix(info.MQTT, "tcp://127.0.0.1:"), info.MQTT)
	mc, err := mqtt.Dial(context.Background(), "tok-a", mqtt.WithBroker(info.MQTT))
	require.NoError(t, err)
	require.NoError(t, mc.Write(context.Background(), []thethings.Value{{Key: "over-mqtt", Value: 5}}))
	require.NoError(t, mc.Close())
	r := cli(t, info.URL, "tok-a", "", "read", "over-mqtt")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []string{"5"}, csvValues(t, r.stdout, true), "the broker is bridged to the API")

	// The CLI works against it.
	r = cli(t, info.URL, "tok-b", "", "write", "k", "42")
	require.Equal(t, 0, r.code, r.stderr)
	r = cli(t, info.URL, "tok-b", "", "read", "k")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []string{"42"}, csvValues(t, r.stdout, true))
	r = cli(t, info.URL, "", "", "activate", "c2", "-product", "prod")
	require.Equal(t, 0, r.code, r.stderr)

	// Its ground truth and faults over HTTP.
	assert.True(t, strings.HasSuffix(info.Control, "/_thethingstest/"), info.Control)
	var stored struct {
		Count  int
		Values []struct{ Key, Value any }
	}
	resp, err := http.Get(info.Control + "stored?token=tok-b&key=k")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&stored))
	resp.Body.Close()
	assert.Equal(t, 1, stored.Count)
	assert.Equal(t, 42.0, stored.Values[0].Value)
	req, err := http.NewRequest(http.MethodPut, info.Control+"faults", strings.NewReader(`{"every503":1,"noRetryAfter":true}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, err = http.Get(info.URL + "things/tok-b/resources/k")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "faults set over HTTP apply")
	http.DefaultClient.CloseIdleConnections()

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.wait(t), p.stderr.String())

	// Without -json: text, with made-up credentials; fault flags reach the server.
	p = start(t, "", "", "emulator", "-addr", "127.0.0.1:0", "-every503", "1")
	url, _ := strings.CutPrefix(p.next(t), "thethings.iO emulator listening on ")
	tok, found := strings.CutPrefix(p.next(t), "thing token:     ")
	require.True(t, found)
	assert.Contains(t, p.next(t), "activation code:")
	assert.Contains(t, p.next(t), "activation code:")
	assert.Contains(t, p.next(t), "in memory", "without -data")
	assert.Empty(t, p.next(t), "no control API without -control")
	resp, err = http.Get(strings.TrimSuffix(url, "v2/") + "_thethingstest/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "an unknown path, with the fault")
	resp, err = http.Get(url + "things/" + tok + "/resources/k")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	http.DefaultClient.CloseIdleConnections()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGINT))
	assert.Equal(t, 0, p.wait(t), p.stderr.String())

	refused(t, "", "flag provided but not defined", "emulator", "-nope")
	refused(t, "", "negative", "emulator", "-addr", "127.0.0.1:0", "-latency", "-1s")
	r = cli(t, "", "", "", "emulator", "-addr", "256.0.0.1:99999")
	assert.Equal(t, 1, r.code, "a listen error: %s", r.stderr)
}

// TestRunInProcess covers run itself, as a program embedding the CLI would
// call it: the token stays out of every output.
func TestRunInProcess(t *testing.T) {
	srv, tok := setup(t)
	seed(t, srv, tok, "k", 3)
	var stdout, stderr bytes.Buffer
	_, getenv := cliEnv(srv.URL(), tok)
	code := run(context.Background(), []string{"read", "k", "-format", "jsonl"}, strings.NewReader(""), &stdout, &stderr, getenv)
	require.Equal(t, 0, code, stderr.String())
	assert.Equal(t, 3, strings.Count(stdout.String(), "\n"))
	assert.NotContains(t, stdout.String()+stderr.String(), tok)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stdout.Reset()
	stderr.Reset()
	code = run(ctx, []string{"read", "k"}, strings.NewReader(""), &stdout, &stderr, getenv)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "run the same command again")
}

// TestLibraryDoesNotLinkTheCLI: a program importing only the root package
// links nothing the CLI imports for itself (the test server, flag parsing
// helpers of other modules, ...).
func TestLibraryDoesNotLinkTheCLI(t *testing.T) {
	list := func(args ...string) map[string]bool {
		out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
		require.NoError(t, err)
		set := map[string]bool{}
		for _, p := range strings.Fields(string(out)) {
			set[p] = true
		}
		return set
	}
	const root = "github.com/thethings-go/thethings"
	lib := list("-deps", root)
	std := list("std")
	cli := list("-deps", ".")
	var cliOnly []string
	for p := range cli {
		if !lib[p] && !std[p] && p != root+"/cmd/thethings" {
			cliOnly = append(cliOnly, p)
		}
	}
	assert.Contains(t, cliOnly, root+"/thethingstest", "the check sees the CLI's own imports")
	direct := list("-f", `{{join .Imports " "}}`, ".")
	for p := range direct {
		// The SDK's own rules (internal/wire) are the library's.
		if p != root && !std[p] && !strings.HasPrefix(p, root+"/internal/") {
			assert.False(t, lib[p], "the library links %s, which only the CLI needs", p)
		}
	}
	for p := range lib {
		assert.False(t, strings.HasPrefix(p, root+"/cmd/") || strings.HasPrefix(p, root+"/thethingstest"), "the library links %s", p)
	}
}

// TestTailBackfill cuts the stream while values are written: with -backfill
// every value of -keys arrives once, live or recovered, and the reconnects
// are reported on stderr.
func TestTailBackfill(t *testing.T) {
	srv, tok := setup(t)
	c, err := thethings.NewClient(tok, thethings.WithBaseURL(srv.URL()))
	require.NoError(t, err)
	srv.SetFaults(thethingstest.Faults{StreamCutAfter: 300 * time.Millisecond})

	const n = 8
	p := start(t, srv.URL(), tok, "tail", "-keys", "a", "-backfill", "-n", fmt.Sprint(n))
	require.True(t, testkit.Eventually(t, "the tail subscribed", func() bool { return srv.OpenSubscriptions() == 1 }))
	write := func(i int) {
		t.Helper()
		require.NoError(t, c.Write(context.Background(), []thethings.Value{{Key: "a", Value: i}, {Key: "b", Value: i}}))
	}
	// Half the values before the cut, half after the tail has connected
	// again: the cut falls between writes however slow the machine.
	for i := range n / 2 {
		write(i)
	}
	require.True(t, testkit.Eventually(t, "the tail reconnects after the cut", func() bool { return srv.Requests(thethingstest.RouteSubscribe) >= 2 }))
	for i := n / 2; i < n; i++ {
		write(i)
	}
	seen := map[float64]int{}
	for range n {
		var m struct {
			Key   string
			Value float64
		}
		require.NoError(t, json.Unmarshal([]byte(p.next(t)), &m))
		assert.Equal(t, "a", m.Key)
		seen[m.Value]++
	}
	assert.Equal(t, 0, p.wait(t))
	assert.Len(t, seen, n, "every value once")
	assert.Contains(t, p.stderr.String(), "thethings tail: disconnected")
}
