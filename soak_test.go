//go:build soak

package thethings_test

// The soak test: a Writer and a Subscribe with backfill run against the
// emulator while it drops writes, cuts streams and answers 503 at random.
// It runs with the soak build tag:
//
//	go test -tags soak -run Soak -count=1 -v .                          # 30s
//	go test -tags soak -run Soak -count=1 -v -soak.duration=10m -timeout=20m .
//
// The emulator runs in a child process (this test binary, re-executed), so
// that the heap measured here is the SDK's and the test's only, not the
// emulator's store, which grows with every value written.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/thethingstest"
)

var (
	soakDuration = flag.Duration("soak.duration", 30*time.Second, "how long the soak test writes")
	soakSeed     = flag.Uint64("soak.seed", 0, "seed of the fault schedule (0: random)")
)

const (
	// soakMarker is written once the writes are over; the subscriber
	// waits for it.
	soakMarker   = -1
	soakToken    = "soak-thing-token-0123456789abcdef"
	soakChildEnv = "THETHINGS_SOAK_EMULATOR"
)

// soakKeys are the keys written: value i to soakKeys[i%len(soakKeys)].
var soakKeys = []string{"soak.a", "soak.b"}

// TestSoakEmulatorProcess is the child process: it serves the emulator and
// an admin API for the parent (faults, ground truth, counters) until its
// stdin closes. It does nothing in an ordinary run.
func TestSoakEmulatorProcess(t *testing.T) {
	if os.Getenv(soakChildEnv) != "1" {
		t.Skip("the soak test's emulator process")
	}
	srv := thethingstest.NewServer(t, thethingstest.WithThingTokens(soakToken))
	defer srv.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var f thethingstest.Faults
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		srv.SetFaults(f)
	})
	mux.HandleFunc("GET /stored", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(srv.Stored(soakToken, r.URL.Query().Get("key")))
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]int{
			"duplicates": srv.Duplicates(), "open_subscriptions": srv.OpenSubscriptions(),
			"writes": srv.Requests(thethingstest.RouteWrite), "reads": srv.Requests(thethingstest.RouteRead),
			"subscribes": srv.Requests(thethingstest.RouteSubscribe),
		})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	admin := &http.Server{Handler: mux}
	go func() { _ = admin.Serve(ln) }()
	defer admin.Close()
	fmt.Printf("SOAK-EMULATOR %s http://%s/\n", srv.URL(), ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin or dies
}

// soakEmulator is the parent's handle on the child process.
type soakEmulator struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	url   string
	admin string
	hc    *http.Client
}

// lockedBuffer collects the child's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (e *soakEmulator) setFaults(t *testing.T, f thethingstest.Faults) {
	b, err := json.Marshal(f)
	assert.NoError(t, err)
	resp, err := e.hc.Post(e.admin+"faults", "application/json", bytes.NewReader(b))
	if assert.NoError(t, err) {
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	}
}

func (e *soakEmulator) get(t *testing.T, path string, out any) {
	resp, err := e.hc.Get(e.admin + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
}

func TestSoak(t *testing.T) {
	dur := *soakDuration
	seed := *soakSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	// The emulator runs in a process of its own.
	cmd := exec.Command(os.Args[0], "-test.run=^TestSoakEmulatorProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), soakChildEnv+"=1")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	emu := &soakEmulator{cmd: cmd, stdin: stdin, hc: &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}}
	if !testkit.Eventually(t, "the emulator process says where it listens", func() bool {
		for line := range strings.Lines(out.String()) {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "SOAK-EMULATOR" {
				emu.url, emu.admin = f[1], f[2]
			}
		}
		return emu.url != ""
	}) {
		t.Fatalf("emulator process did not start: %s", out.String())
	}
	t.Cleanup(func() {
		_ = emu.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			assert.NoError(t, err, "emulator process: %s", out.String())
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("emulator process did not exit: %s", out.String())
		}
		emu.hc.CloseIdleConnections()
	})
	faultRand := rand.New(rand.NewPCG(seed, 1))
	// randomFaults is one step of the fault schedule. Every step cuts the
	// streams it opens, after 0.2s to 2s (StreamCutAfter is read when a
	// stream opens); some also drop writes (stored or not) and answer 503.
	randomFaults := func() thethingstest.Faults {
		r := faultRand
		f := thethingstest.Faults{StreamCutAfter: 200*time.Millisecond + time.Duration(r.Int64N(int64(1800*time.Millisecond)))}
		drop := func() { f.DropEvery, f.DropStores = 2+r.IntN(6), r.IntN(2) == 0 }
		busy := func() { f.Every503 = 3 + r.IntN(5) }
		switch r.IntN(4) {
		case 0: // cuts only
		case 1:
			drop()
		case 2:
			busy()
		default:
			drop()
			busy()
		}
		return f
	}
	emu.setFaults(t, randomFaults())
	emu.hc.CloseIdleConnections()
	testkit.Eventually(t, "the admin connection's goroutines end", func() bool {
		buf := make([]byte, 1<<20)
		return !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("net/http.(*persistConn)"))
	})
	baseline := runtime.NumGoroutine()

	unary := &bodyCounter{rt: http.DefaultTransport.(*http.Transport).Clone()}
	streamBC := &bodyCounter{rt: http.DefaultTransport.(*http.Transport).Clone()}
	c, err := thethings.NewClient(soakToken,
		thethings.WithBaseURL(emu.url),
		thethings.WithHTTPClient(unary.httpClient()),
		thethings.WithStreamHTTPClient(&http.Client{Transport: streamBC}),
		// Enough retries that a backfill read outlasts a burst of 503s.
		thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 10, MinWait: 5 * time.Millisecond, MaxWait: 100 * time.Millisecond}))
	require.NoError(t, err)

	// The heap sampler: HeapInuse after a GC, 40 times over the run.
	var heap []uint64
	heapDone := make(chan struct{})
	heapCtx, stopHeap := context.WithCancel(context.Background())
	go func() {
		defer close(heapDone)
		tick := time.NewTicker(max(dur/40, 250*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-heapCtx.Done():
				return
			case <-tick.C:
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				heap = append(heap, ms.HeapInuse)
			}
		}
	}()

	// The subscriber counts every value it receives, live and backfilled.
	var (
		seenMu                     sync.Mutex
		seen                       []uint8 // by value
		strange                    []string
		liveValues, backfillValues int
		states                     = map[thethings.State]int{}
		backfillFailures           int
	)
	subCtx, stopSub := context.WithCancel(context.Background())
	subDone := make(chan error, 1)
	connected := make(chan struct{}, 1)
	markerSeen := make(chan struct{})
	var markerOnce sync.Once
	go func() {
		var last error
		for msg, err := range c.Subscribe(subCtx,
			thethings.WithKeepAlive(time.Second),
			thethings.WithBackfill(soakKeys...),
			thethings.WithStateHandler(func(s thethings.State, cause error) {
				seenMu.Lock()
				states[s]++
				if s == thethings.StateConnected && cause != nil {
					backfillFailures++
					strange = append(strange, "backfill failed: "+cause.Error())
				}
				seenMu.Unlock()
				if s == thethings.StateConnected {
					select {
					case connected <- struct{}{}:
					default:
					}
				}
			})) {
			if err != nil {
				last = err
				continue
			}
			seenMu.Lock()
			for _, v := range msg.Values {
				i, err := v.Int64()
				if err == nil && i == soakMarker && v.Key == soakKeys[0] {
					markerOnce.Do(func() { close(markerSeen) })
					continue
				}
				if err != nil || i < 0 || soakKeys[int(i)%len(soakKeys)] != v.Key {
					strange = append(strange, fmt.Sprintf("value %q=%v", v.Key, v.Value))
					continue
				}
				for int(i) >= len(seen) {
					seen = append(seen, 0)
				}
				seen[i]++
				if msg.Backfill {
					backfillValues++
				} else {
					liveValues++
				}
			}
			seenMu.Unlock()
		}
		subDone <- last
	}()
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("subscription did not connect")
	}

	// The fault schedule.
	faultCtx, stopFaults := context.WithCancel(context.Background())
	faultsDone := make(chan int)
	go func() {
		r := faultRand
		steps := 0
		for {
			select {
			case <-faultCtx.Done():
				emu.setFaults(t, thethingstest.Faults{})
				faultsDone <- steps
				return
			case <-time.After(300*time.Millisecond + time.Duration(r.Int64N(int64(700*time.Millisecond)))):
				emu.setFaults(t, randomFaults())
				steps++
			}
		}
	}()

	// The writer: one value every millisecond, flushed now and then so that
	// its reports do not pile up.
	// Server timestamps: the subscriber's backfill finds a gap's values by
	// their datetimes, so values stamped at Add and delivered after an
	// outage are outside its window, as WithBackfill documents.
	w := mustWriter(t, c, thethings.WithBatchSize(25), thethings.WithFlushInterval(20*time.Millisecond), thethings.WithMaxBuffered(5000), thethings.WithServerTimestamps())
	// What the Writer reported, kept compact: value → "unknown" or "not
	// written".
	reported := map[int32]bool{} // true: unknown
	report := func(err error) {
		wes, _ := walkWriteErrors(err)
		require.NotEmpty(t, wes, "a report without WriteError: %v", err)
		for _, we := range wes {
			for _, v := range we.Values {
				i := int32(v.Value.(int))
				_, dup := reported[i]
				require.False(t, dup, "value %d reported twice", i)
				reported[i] = we.Unknown
			}
		}
	}
	n := 0
	start := time.Now()
	lastFlush := start
	for time.Since(start) < dur {
		require.NoError(t, w.Add(context.Background(), thethings.Value{Key: soakKeys[n%len(soakKeys)], Value: n}))
		n++
		if time.Since(lastFlush) > time.Second {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := w.Flush(ctx); err != nil {
				report(err)
			}
			cancel()
			lastFlush = time.Now()
		}
		time.Sleep(time.Millisecond)
	}
	stopHeap() // the heap is measured while the soak runs
	<-heapDone
	stopFaults()
	faultSteps := <-faultsDone
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 60*time.Second)
	if err := w.Close(closeCtx); err != nil {
		report(err)
	}
	cancelClose()
	writeTime := time.Since(start)

	fate := make([]string, n)
	unknownN, notWrittenN := 0, 0
	for i, unknown := range reported {
		if unknown {
			fate[i] = "unknown"
			unknownN++
		} else {
			fate[i] = "not written"
			notWrittenN++
		}
	}

	// The ground truth.
	stored := make([]int, n)
	storedN := 0
	for _, key := range soakKeys {
		var recs []thethingstest.Record
		emu.get(t, "stored?key="+key, &recs)
		for _, r := range recs {
			i, err := strconv.Atoi(string(r.Value))
			require.NoError(t, err)
			require.True(t, i >= 0 && i < n && soakKeys[i%len(soakKeys)] == key, "stored value %s=%d never written", key, i)
			stored[i]++
			storedN++
		}
	}

	// Wait for the subscriber to have seen every stored value, then for
	// a marker written after them all: a duplicate would have arrived
	// before it. The marker's key is backfilled, so a cut stream does not
	// lose it.
	testkit.Eventually(t, "the subscriber has seen every stored value", func() bool {
		seenMu.Lock()
		defer seenMu.Unlock()
		return liveValues+backfillValues >= storedN
	})
	require.NoError(t, c.Write(context.Background(), []thethings.Value{{Key: soakKeys[0], Value: soakMarker}}))
	testkit.Eventually(t, "the subscriber has seen the marker", func() bool {
		select {
		case <-markerSeen:
			return true
		default:
			return false
		}
	})
	stopSub()
	subErr := <-subDone
	assert.NoError(t, subErr, "the subscription ends with its context, silently")

	var stats map[string]int
	emu.get(t, "stats", &stats)

	// Every value: written once, or reported.
	okWrong, unknownStored, unknownUnstored, notWrittenStored := 0, 0, 0, 0
	for i := range n {
		switch fate[i] {
		case "":
			if stored[i] != 1 {
				okWrong++
				if okWrong < 10 {
					t.Errorf("value %d written without report is stored %d times", i, stored[i])
				}
			}
		case "unknown":
			switch stored[i] {
			case 0:
				unknownUnstored++
			case 1:
				unknownStored++
			default:
				t.Errorf("value %d of unknown fate stored %d times (RetryWrites is off)", i, stored[i])
			}
		case "not written":
			if stored[i] != 0 {
				notWrittenStored++
			}
		}
	}
	assert.Zero(t, okWrong, "values written without report and not stored exactly once")
	assert.Zero(t, notWrittenStored, "values reported not written but stored")
	assert.Zero(t, stats["duplicates"], "values stored twice")

	// Every stored value seen once by the subscriber, nothing else.
	seenMu.Lock()
	missed, dup, phantom := 0, 0, 0
	for i := range n {
		s := 0
		if i < len(seen) {
			s = int(seen[i])
		}
		switch {
		case stored[i] == 1 && s == 0:
			missed++
			if missed < 10 {
				t.Errorf("stored value %d (%s) never seen by the subscriber", i, soakKeys[i%len(soakKeys)])
			}
		case s > 1:
			dup++
			if dup < 10 {
				t.Errorf("value %d seen %d times", i, s)
			}
		case stored[i] == 0 && s > 0:
			phantom++
		}
	}
	assert.Empty(t, strange, "unexpected subscription events")
	assert.Zero(t, phantom, "values seen but not stored")
	assert.LessOrEqual(t, len(seen), n)
	live, back, st := liveValues, backfillValues, states
	seenMu.Unlock()

	// Back to the baseline: every body closed, every goroutine gone.
	assert.Zero(t, unary.open(), "unary response bodies left open")
	assert.Zero(t, streamBC.open(), "stream response bodies left open")
	unary.rt.CloseIdleConnections()
	streamBC.rt.CloseIdleConnections()
	emu.hc.CloseIdleConnections()
	var goroutines int
	testkit.Eventually(t, "the goroutines go back to the baseline after the soak", func() bool {
		goroutines = runtime.NumGoroutine()
		return goroutines <= baseline
	})

	// The heap levels off: past a warm-up tenth, the last quarter's peak
	// is within 1.5x of the first quarter's.
	warm := heap[len(heap)/10:]
	q := max(len(warm)/4, 1)
	first, last := slices.Max(warm[:q]), slices.Max(warm[len(warm)-q:])
	ratio := float64(last) / float64(first)
	assert.LessOrEqual(t, ratio, 1.5, "heap in use grew from %d to %d bytes", first, last)

	t.Logf("soak: seed %d, %s of writes (%s in all), %d fault changes", seed, writeTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), faultSteps)
	t.Logf("soak: %d values written, %d stored, %d duplicates; Writer reported %d unknown (%d stored, %d not), %d not written",
		n, storedN, stats["duplicates"], unknownN, unknownStored, unknownUnstored, notWrittenN)
	t.Logf("soak: emulator saw %d write, %d read, %d subscribe requests", stats["writes"], stats["reads"], stats["subscribes"])
	t.Logf("soak: subscriber saw %d values live, %d backfilled; missed %d, duplicated %d, phantom %d; %d connects, %d disconnects, %d failed backfills",
		live, back, missed, dup, phantom, st[thethings.StateConnected], st[thethings.StateDisconnected], backfillFailures)
	t.Logf("soak: goroutines %d at start, %d at the end", baseline, goroutines)
	t.Logf("soak: heap in use (after GC), %d samples: first quarter peak %.2f MiB, last quarter peak %.2f MiB, ratio %.2f (min %.2f, max %.2f MiB)",
		len(heap), float64(first)/mib, float64(last)/mib, ratio, float64(slices.Min(heap))/mib, float64(slices.Max(heap))/mib)
	samples := make([]string, len(heap))
	for i, h := range heap {
		samples[i] = fmt.Sprintf("%.2f", float64(h)/mib)
	}
	t.Logf("soak: heap samples (MiB): %s", strings.Join(samples, " "))
	if t.Failed() {
		t.Logf("soak: rerun this schedule with -soak.seed=%d", seed)
	}
}
