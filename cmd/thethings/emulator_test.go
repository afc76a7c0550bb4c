package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings/thethingstest"
)

// emulatorStarted is what the emulator prints with -json.
type emulatorStarted struct {
	URL     string
	Tokens  []string
	Codes   []struct{ Code, Product string }
	Data    string
	MQTT    string
	Control string
}

// startEmulator starts the binary's emulator with -json and returns its
// process and what it printed.
func startEmulator(t *testing.T, args ...string) (*started, emulatorStarted) {
	t.Helper()
	p := start(t, "", "", append([]string{"emulator", "-addr", "127.0.0.1:0", "-json"}, args...)...)
	var info emulatorStarted
	require.NoError(t, json.Unmarshal([]byte(p.next(t)), &info))
	return p, info
}

// TestEmulatorDataSurvivesKill writes through the CLI, kills the emulator
// with SIGKILL (no chance to flush anything) and reads everything back
// from a new emulator on the same -data directory.
func TestEmulatorDataSurvivesKill(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGKILL")
	}
	dir := t.TempDir()
	p, info := startEmulator(t, "-data", dir, "-tokens", "tok", "-codes", "code-1")
	assert.Equal(t, dir, info.Data)
	ok := func(r result) result {
		t.Helper()
		require.Equal(t, 0, r.code, r.stderr)
		return r
	}
	ok(cli(t, info.URL, "tok", "", "write", "temperature", "21.5", "-at", "2024-05-01T10:00:00Z", "-geo", "41.39,2.17"))
	ok(cli(t, info.URL, "tok", "", "write", "temperature", "22", "-at", "2024-05-01T11:00:00Z"))
	ok(cli(t, info.URL, "tok", `{"key":"temperature","value":23.25,"datetime":"2024-05-01T12:00:00Z"}
{"key":"status","value":{"door":"open","n":[1,2]}}
`, "write"))
	ok(cli(t, info.URL, "tok", "", "settings", "set", "alarm.max", "30"))
	ok(cli(t, info.URL, "tok", "", "settings", "set", "name", "boiler room"))
	ok(cli(t, info.URL, "tok", "", "geo", "-33.86,151.21"))
	token2 := strings.TrimSpace(ok(cli(t, info.URL, "", "", "activate", "code-1")).stdout)
	require.NotEmpty(t, token2)
	ok(cli(t, info.URL, token2, "", "write", "humidity", "40"))

	read := func(url string) map[string]string {
		return map[string]string{
			"temperature": ok(cli(t, url, "tok", "", "read", "temperature", "-limit", "100", "-format", "jsonl")).stdout,
			"status":      ok(cli(t, url, "tok", "", "read", "status", "-format", "jsonl")).stdout,
			"settings":    ok(cli(t, url, "tok", "", "settings")).stdout,
			"alarm.max":   ok(cli(t, url, "tok", "", "settings", "get", "alarm.max")).stdout,
			"geo":         ok(cli(t, url, "tok", "", "geo")).stdout,
			"humidity":    ok(cli(t, url, token2, "", "read", "humidity", "-format", "jsonl")).stdout,
		}
	}
	want := read(info.URL)
	assert.Equal(t, 3, strings.Count(want["temperature"], "\n"), want["temperature"])
	assert.Contains(t, want["temperature"], `"geo":{"lat":41.39,"long":2.17}`)
	assert.JSONEq(t, `{"alarm":{"max":30},"name":"boiler room"}`, want["settings"])
	assert.Equal(t, "-33.86,151.21\n", want["geo"])

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.wait(t)

	p2, info2 := startEmulator(t, "-data", dir)
	assert.Equal(t, []string{"tok", token2}, info2.Tokens, "no token made up: the directory has things")
	require.Len(t, info2.Codes, 2, "two new codes: the one kept was used")
	assert.NotEqual(t, "code-1", info2.Codes[0].Code)
	assert.NotEqual(t, "code-1", info2.Codes[1].Code)
	assert.Equal(t, want, read(info2.URL))
	r := cli(t, info2.URL, "", "", "activate", "code-1")
	assert.Equal(t, 1, r.code, "a used code stays used")
	assert.Contains(t, r.stderr, "activation code not found")
	require.NoError(t, p2.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p2.wait(t), p2.stderr.String())
}

// TestEmulatorKilledWhileWriting kills the emulator while 8 writers are
// sending values, some requests half sent, some half stored: a new
// emulator on the directory serves every value that was acknowledged.
func TestEmulatorKilledWhileWriting(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGKILL")
	}
	dir := t.TempDir()
	p, info := startEmulator(t, "-data", dir, "-tokens", "tok")
	const writers, killAfter = 8, 200
	var mu sync.Mutex
	acked := map[string]bool{}
	enough := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				v := fmt.Sprintf("%d.%d", w, i)
				body := `{"values":[{"key":"k","value":"` + v + `"},{"key":"k","value":"` + v + `b"}]}`
				resp, err := client.Post(info.URL+"things/tok", "application/json", strings.NewReader(body))
				if err != nil {
					return // killed
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("status %d", resp.StatusCode)
					return
				}
				mu.Lock()
				acked[v], acked[v+"b"] = true, true
				if len(acked) == 2*killAfter {
					close(enough)
				}
				mu.Unlock()
			}
		}()
	}
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-enough: // the writers are still writing
	case <-stopped:
		t.Fatal("the writers stopped before the kill")
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-stopped
	p.wait(t)
	client.CloseIdleConnections()

	p2, info2 := startEmulator(t, "-data", dir)
	require.Len(t, info2.Codes, 2, "no unused code kept: two made up")
	made := info2.Codes
	require.NoError(t, p2.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p2.wait(t), p2.stderr.String())
	p2, info2 = startEmulator(t, "-data", dir)
	assert.Equal(t, made, info2.Codes, "the made-up codes are kept, none added")
	r := cli(t, info2.URL, "tok", "", "read", "k", "-limit", "100000", "-format", "jsonl")
	require.Equal(t, 0, r.code, r.stderr)
	stored := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var it struct{ Value string }
		require.NoError(t, json.Unmarshal([]byte(line), &it), line)
		assert.False(t, stored[it.Value], "stored twice: %s", it.Value)
		stored[it.Value] = true
	}
	for v := range acked {
		assert.True(t, stored[v], "acknowledged, then lost: %s", v)
	}
	for v := range stored {
		if !acked[v] {
			assert.True(t, stored[strings.TrimSuffix(v, "b")] && stored[strings.TrimSuffix(v, "b")+"b"], "half a write: %s", v)
		}
	}
	t.Logf("%d acknowledged, %d stored", len(acked), len(stored))
	require.NoError(t, p2.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p2.wait(t), p2.stderr.String())
}

func TestEmulatorDataDirInUse(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	dir := t.TempDir()
	p, _ := startEmulator(t, "-data", dir)
	r := cli(t, "", "", "", "emulator", "-addr", "127.0.0.1:0", "-data", dir)
	assert.Equal(t, 1, r.code, r.stderr)
	assert.Contains(t, r.stderr, "in use")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 0, p.wait(t), p.stderr.String())
}

// TestEmulatorHelpSaysWhereDataIs: a user must learn from -h that the
// store is in memory unless -data, and that the control API is opt-in.
func TestEmulatorHelpSaysWhereDataIs(t *testing.T) {
	r := cli(t, "", "", "", "emulator", "-h")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "-data DIR")
	assert.Contains(t, r.stdout, "in memory, lost when the emulator stops")
	assert.Contains(t, r.stdout, "-control")
}

func TestEmulatorControlAPIOnlyWithFlag(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM")
	}
	for _, withFlag := range []bool{false, true} {
		args := []string{"-tokens", "secret"}
		if withFlag {
			args = append(args, "-control")
		}
		p, info := startEmulator(t, args...)
		root := strings.TrimSuffix(info.URL, "v2/")
		resp, err := http.Get(root + "_thethingstest/")
		require.NoError(t, err)
		resp.Body.Close()
		if withFlag {
			assert.Equal(t, http.StatusOK, resp.StatusCode)
		} else {
			assert.Equal(t, http.StatusNotFound, resp.StatusCode)
		}
		req, err := http.NewRequest("GET", root+"_thethingstest/", nil)
		require.NoError(t, err)
		req.Host = "evil.example"
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Contains(t, []int{http.StatusForbidden, http.StatusNotFound}, resp.StatusCode, "DNS rebinding")
		http.DefaultClient.CloseIdleConnections()
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		assert.Equal(t, 0, p.wait(t), p.stderr.String())
	}
}

// BenchmarkEmulatorRestart1M starts the emulator binary on a -data
// directory holding 1,000,000 values and measures the time until it
// prints its address (it serves them all by then) and its peak resident
// memory (VmHWM).
func BenchmarkEmulatorRestart1M(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc")
	}
	dir := b.TempDir()
	srv, err := thethingstest.New(thethingstest.WithDataDir(dir), thethingstest.WithThingTokens("tok"))
	require.NoError(b, err)
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]thethingstest.Record, 1_000_000)
	for i := range recs {
		recs[i] = thethingstest.Record{Value: json.RawMessage(strconv.Itoa(i%1000) + ".5"), Datetime: base.Add(time.Duration(i) * time.Second)}
	}
	require.NoError(b, srv.Seed("tok", "temperature", recs...))
	require.NoError(b, srv.Close())
	recs = nil

	var hwm float64
	for b.Loop() {
		cmd := exec.Command(bin, "emulator", "-addr", "127.0.0.1:0", "-json", "-data", dir)
		out, err := cmd.StdoutPipe()
		require.NoError(b, err)
		require.NoError(b, cmd.Start())
		line, err := bufio.NewReader(out).ReadString('\n')
		require.NoError(b, err, "no address printed")
		b.StopTimer()
		var info emulatorStarted
		require.NoError(b, json.Unmarshal([]byte(line), &info))
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		require.NoError(b, err)
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
				require.NoError(b, err)
				hwm = float64(kb) / 1024
			}
		}
		require.NoError(b, cmd.Process.Signal(syscall.SIGTERM))
		require.NoError(b, cmd.Wait())
		b.StartTimer()
	}
	b.ReportMetric(hwm, "peak-RSS-MiB")
}
