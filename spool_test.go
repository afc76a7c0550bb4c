package thethings_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/thethingstest"
)

// spoolOffline adds n values to a spooled writer that cannot reach the
// platform and closes it: the values stay in dir.
func spoolOffline(t *testing.T, dir string, from, n int) {
	t.Helper()
	_, c := setup(t, offlineURL, unreachable)
	w := mustWriter(t, c, thethings.WithSpool(dir), thethings.WithFlushInterval(0))
	for i := from; i < from+n; i += 10 {
		require.NoError(t, w.Add(context.Background(), intValues("n", i, min(10, from+n-i))...))
	}
	assert.Equal(t, int64(n), w.Stats().Pending)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := w.Close(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("%d values left in the spool", n))
}

// drain opens the spool in dir with a client of srv and closes it, which
// sends what the spool holds.
func drain(t *testing.T, srv *thethingstest.Server, dir string) thethings.WriterStats {
	t.Helper()
	_, c := setup(t, srv.URL())
	w := mustWriter(t, c, thethings.WithSpool(dir))
	require.NoError(t, w.Close(context.Background()))
	return w.Stats()
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	require.NoError(t, err)
	return segs
}

// TestSpoolKeepsValuesAcrossWriters: values added while offline are sent,
// once, by the next writer on the same spool.
func TestSpoolKeepsValuesAcrossWriters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spoolOffline(t, dir, 0, 250)
	srv, _ := setup(t)
	st := drain(t, srv, dir)
	assertStoredOnce(t, srv, "n", 250)
	assert.Zero(t, st.Pending)
	// The writer before recorded that none of its requests could still be
	// carried out (every dial failed): nothing is read back first.
	assert.Zero(t, srv.Requests(thethingstest.RouteRead))
	// Everything acknowledged: one empty segment is left.
	require.Len(t, segments(t, dir), 1)
	st = drain(t, srv, dir)
	assert.Zero(t, st.Sent+st.Verified)
	assertStoredOnce(t, srv, "n", 250)
}

// TestSpoolCorruptionIsAnError: a damaged record in the middle of a
// segment, or a file the writer did not make, is an error naming the file.
func TestSpoolCorruptionIsAnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spoolOffline(t, dir, 0, 100)
	segs := segments(t, dir)
	require.Len(t, segs, 1)
	data, err := os.ReadFile(segs[0])
	require.NoError(t, err)
	_, c := setup(t)
	for _, at := range []int{len(data) / 2, len(data) / 3, 8 + 4} { // a payload, another, a header
		bad := append([]byte(nil), data...)
		bad[at] ^= 0x20
		require.NoError(t, os.WriteFile(segs[0], bad, 0o600))
		_, err = c.NewWriter(thethings.WithSpool(dir))
		require.Error(t, err, "byte %d flipped", at)
		assert.ErrorIs(t, err, thethings.ErrSpoolCorrupt)
		assert.Contains(t, err.Error(), segs[0])
	}
	require.NoError(t, os.WriteFile(segs[0], data, 0o600))

	foreign := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(foreign, []byte("hello"), 0o600))
	_, err = c.NewWriter(thethings.WithSpool(dir))
	assert.ErrorIs(t, err, thethings.ErrSpoolCorrupt)
	assert.Contains(t, err.Error(), foreign)
	require.NoError(t, os.Remove(foreign))

	ack := filepath.Join(dir, "ACKED")
	good, err := os.ReadFile(ack)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(ack, []byte("garbage, not an acknowledgement record at all, nope!!!!!!!!!!!!!!"), 0o600))
	_, err = c.NewWriter(thethings.WithSpool(dir))
	assert.ErrorIs(t, err, thethings.ErrSpoolCorrupt)
	assert.Contains(t, err.Error(), ack)
	require.NoError(t, os.Remove(ack))
	_, err = c.NewWriter(thethings.WithSpool(dir))
	assert.ErrorIs(t, err, thethings.ErrSpoolCorrupt)
	assert.Contains(t, err.Error(), ack)
	require.NoError(t, os.WriteFile(ack, good, 0o600))

	srv, _ := setup(t)
	drain(t, srv, dir)
	assertStoredOnce(t, srv, "n", 100)
}

// TestSpoolTornTailIsRecovered: a record cut short at the end of the last
// segment, as a crash in the middle of a write leaves it, is dropped; the
// values before it are sent.
func TestSpoolTornTailIsRecovered(t *testing.T) {
	t.Parallel()
	for _, cut := range []int{1, 5, 12, 20} {
		t.Run(strconv.Itoa(cut), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			spoolOffline(t, dir, 0, 100)
			segs := segments(t, dir)
			st, err := os.Stat(segs[0])
			require.NoError(t, err)
			require.NoError(t, os.Truncate(segs[0], st.Size()-int64(cut)))
			srv, _ := setup(t)
			drain(t, srv, dir)
			assertStoredOnce(t, srv, "n", 99)
		})
	}
	t.Run("zeros", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		spoolOffline(t, dir, 0, 50)
		f, err := os.OpenFile(segments(t, dir)[0], os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.Write(make([]byte, 4096))
		require.NoError(t, err)
		require.NoError(t, f.Close())
		srv, _ := setup(t)
		drain(t, srv, dir)
		assertStoredOnce(t, srv, "n", 50)
	})
}

// TestSpoolSecondWriterIsAnError: one spool, one writer at a time.
func TestSpoolSecondWriterIsAnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, c := setup(t)
	w := mustWriter(t, c, thethings.WithSpool(dir))
	_, err := c.NewWriter(thethings.WithSpool(dir))
	assert.ErrorIs(t, err, thethings.ErrSpoolLocked)
	require.NoError(t, w.Close(context.Background()))
	w = mustWriter(t, c, thethings.WithSpool(dir))
	require.NoError(t, w.Close(context.Background()))

	_, err = c.NewWriter(thethings.WithSpool(dir), thethings.WithServerTimestamps())
	assert.ErrorIs(t, err, thethings.ErrInvalidOption)
}

// TestSpoolBoundBlocksAdd: a full spool makes Add wait, ctx-aware, and
// rotating and compacting segments keeps the disk bounded.
func TestSpoolBoundBlocksAdd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, c := setup(t, offlineURL)
	w := mustWriter(t, c, thethings.WithSpool(dir), thethings.WithSpoolLimit(64<<10))
	ctx := context.Background()
	added := 0
	for {
		ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := w.Add(ctx, intValues("n", added, 100)...)
		cancel()
		if err != nil {
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			break
		}
		added += 100
		require.Less(t, added, 10000, "the bound holds")
	}
	assert.Positive(t, added)
	ctx2, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	require.Error(t, w.Close(ctx2))

	srv, c := setup(t)
	w = mustWriter(t, c, thethings.WithSpool(dir), thethings.WithSpoolLimit(64<<10), thethings.WithFlushInterval(0))
	for i := added; i < added+5000; i += 100 {
		require.NoError(t, w.Add(ctx, intValues("n", i, 100)...))
	}
	require.NoError(t, w.Close(ctx))
	assertStoredOnce(t, srv, "n", added+5000)
	assert.LessOrEqual(t, len(segments(t, dir)), 2, "acknowledged segments are deleted")
}

const crashEnv = "THETHINGS_SPOOL_CRASH_CHILD"

// TestSpoolCrashChild is the child process of TestSpoolCrash: it adds
// sequence-numbered values to a spooled writer and prints each value range
// before Add ("try a b") and once Add returned ("ack b"), until killed.
func TestSpoolCrashChild(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("child of TestSpoolCrash")
	}
	var dir, url string
	var from int
	_, err := fmt.Sscanf(spec, "%s %s %d", &dir, &url, &from)
	if err != nil {
		t.Fatal(err)
	}
	// A short attempt timeout: a writer started after a kill waits until
	// the request the killed one may have had in flight is over.
	c, err := thethings.NewClient(sentinelToken, thethings.WithBaseURL(url), fastRetry, thethings.WithHTTPClient(&http.Client{Timeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.NewWriter(thethings.WithSpool(dir), thethings.WithBatchSize(20), thethings.WithFlushInterval(5*time.Millisecond),
		thethings.WithErrorHandler(func(we *thethings.WriteError) {
			fmt.Printf("error handler: %d values: %v\n", len(we.Values), we)
		}))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	if from < 0 { // drain and exit
		if err := w.Close(context.Background()); err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
		fmt.Println("drained")
		os.Exit(0)
	}
	for i := from; ; i += 7 {
		fmt.Printf("try %d %d\n", i, i+6)
		if err := w.Add(context.Background(), intValues("n", i, 7)...); err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
		fmt.Printf("ack %d\n", i+6)
	}
}

// TestSpoolCrash kills a process writing through a spooled writer with
// SIGKILL at random moments, 15 times, while the platform stores some
// writes and drops their answers. Every value whose Add returned is stored
// exactly once; a value whose Add was cut is stored at most once.
func TestSpoolCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Parallel()
	srv, _ := setup(t, thethingstest.WithFaults(thethingstest.Faults{DropEvery: 3, DropStores: true}))
	dir := t.TempDir()
	acked, tried := -1, -1
	cut := map[int]bool{}
	run := func(from int, life time.Duration) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSpoolCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d", crashEnv, dir, srv.URL(), from))
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		timer := time.AfterFunc(life, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		defer timer.Stop()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 3 && f[0] == "try":
				tried, _ = strconv.Atoi(f[2])
			case len(f) == 2 && f[0] == "ack":
				acked, _ = strconv.Atoi(f[1])
			case len(f) > 0 && f[0] == "error":
				t.Errorf("child: %s", sc.Text())
			}
		}
		_ = cmd.Wait()
		for v := acked + 1; v <= tried; v++ {
			cut[v] = true // its Add never returned
		}
	}
	for range 15 {
		run(tried+1, time.Duration(150+rand.IntN(250))*time.Millisecond)
	}
	run(-1, time.Minute)
	require.Positive(t, acked)
	t.Logf("%d values added, %d of them cut by a kill", tried+1, len(cut))

	assert.Zero(t, srv.Duplicates())
	count := map[int]int{}
	for _, v := range ints(t, srv.Stored(sentinelToken, "n")) {
		count[v]++
	}
	for v := 0; v <= tried; v++ {
		switch {
		case count[v] > 1:
			t.Errorf("value %d stored %d times", v, count[v])
		case count[v] == 0 && !cut[v]:
			t.Errorf("acknowledged value %d not stored", v)
		}
	}
	for v := range count {
		assert.LessOrEqual(t, v, tried, "stored a value never added")
	}
}

// TestSpoolCloseEndsBlockedAdd: an Add waiting for room in a full spool,
// with a context that never ends, returns ErrWriterClosed once the writer is
// closed, as it does with a buffer in memory.
func TestSpoolCloseEndsBlockedAdd(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		_, c := setup(t, offlineURL)
		w := mustWriter(t, c, thethings.WithSpool(dir), thethings.WithSpoolLimit(64<<10))
		var refused []thethings.Value
		for added := 0; refused == nil; added += 100 {
			require.Less(t, added, 10000, "the bound holds")
			vals := intValues("n", added, 100)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			if err := w.Add(ctx, vals...); err != nil {
				require.ErrorIs(t, err, context.DeadlineExceeded)
				refused = vals
			}
			cancel()
		}
		blocked := make(chan error, 1)
		go func() { blocked <- w.Add(context.Background(), refused...) }()
		synctest.Wait() // the Add waits for room, the writer for its next attempt
		select {
		case err := <-blocked:
			t.Fatalf("Add returned %v with no room", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		require.Error(t, w.Close(ctx))
		select {
		case err := <-blocked:
			assert.ErrorIs(t, err, thethings.ErrWriterClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("Add still blocked after Close")
		}
	})
}

// TestSpoolRestartWithSmallerBatchVerifiesInFlight: a writer with batches of
// 100 dies while its first batch, stored, waits for its answer; the next
// writer on the spool has batches of 10. It must read back the whole batch
// that may have been in flight, not only its own first 10 values.
func TestSpoolRestartWithSmallerBatchVerifiesInFlight(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	vals := intValues("n", 0, 100, time.Now())
	// The first writer's request reaches a server that never answers: it
	// is in flight when the writer stops.
	arrived := make(chan struct{}, 1)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	defer hang.Close()
	_, c0 := setup(t, hang.URL+"/v2/", thethings.WithHTTPClient(&http.Client{Timeout: 200 * time.Millisecond}))
	w := mustWriter(t, c0, thethings.WithSpool(dir), thethings.WithBatchSize(100), thethings.WithFlushInterval(0))
	require.NoError(t, w.Add(context.Background(), vals...))
	go func() { _ = w.Flush(context.Background()) }()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never arrived")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.Error(t, w.Close(ctx)) // the values stay in the spool
	// As if that batch had been stored before the writer died.
	srv, c := setup(t)
	require.NoError(t, c.Write(context.Background(), vals))

	w = mustWriter(t, c, thethings.WithSpool(dir), thethings.WithBatchSize(10))
	require.NoError(t, w.Close(context.Background()))
	assertStoredOnce(t, srv, "n", 100)
	assert.Equal(t, int64(100), w.Stats().Verified)
}

// TestSpoolAddContextBoundsOnlyTheWait: ctx bounds Add's wait for room, not
// the sync of values already written: an Add with an ended context and room
// takes its values (nil), which are then sent once.
func TestSpoolAddContextBoundsOnlyTheWait(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	w := mustWriter(t, c, thethings.WithSpool(t.TempDir()), thethings.WithFlushInterval(0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, w.Add(ctx, intValues("n", 0, 10)...))
	assert.Equal(t, int64(10), w.Stats().Pending)
	require.NoError(t, w.Close(context.Background()))
	assertStoredOnce(t, srv, "n", 10)
	assert.Zero(t, w.Stats().Pending)
}

// TestSpoolCloseWaitsForAddsBeingSynced: Close, even cut short by its
// context, lets the Adds already writing finish their sync before it closes
// the spool: each Add says either taken (and the values are in the spool
// for the next writer) or ErrWriterClosed (and they are not).
func TestSpoolCloseWaitsForAddsBeingSynced(t *testing.T) {
	t.Parallel()
	for round := range 5 {
		dir := t.TempDir()
		_, c := setup(t, offlineURL)
		w := mustWriter(t, c, thethings.WithSpool(dir), thethings.WithFlushInterval(0))
		var taken atomic.Int64
		errs := make(chan error, 8)
		for g := range 8 {
			go func() {
				for i := 0; ; i++ {
					err := w.Add(context.Background(), intValues("n", (g*1000+i)*10, 10)...)
					if err != nil {
						errs <- err
						return
					}
					taken.Add(10)
				}
			}()
		}
		// Close at a different point of the Adds in each round.
		testkit.Eventually(t, "adds under way", func() bool { return taken.Load() >= int64(round+1)*200 })
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.Error(t, w.Close(ctx))
		for range 8 {
			require.ErrorIs(t, <-errs, thethings.ErrWriterClosed)
		}
		w = mustWriter(t, c, thethings.WithSpool(dir), thethings.WithFlushInterval(0))
		assert.Equal(t, taken.Load(), w.Stats().Pending, "the spool holds what Add took")
		ctx, cancel = context.WithCancel(context.Background())
		cancel()
		require.Error(t, w.Close(ctx))
	}
}

// TestSpoolLostFilesAreAnError: an empty acknowledgement file beside
// segments, or a first segment missing (its values not acknowledged), is
// damage: an error naming the file, not values sent twice or skipped.
func TestSpoolLostFilesAreAnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, c := setup(t, offlineURL)
	w := mustWriter(t, c, thethings.WithSpool(dir), thethings.WithSpoolLimit(1<<20), thethings.WithFlushInterval(0))
	for added := 0; len(segments(t, dir)) < 2; added += 100 {
		require.Less(t, added, 10000)
		require.NoError(t, w.Add(context.Background(), intValues("n", added, 100)...))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.Error(t, w.Close(ctx))
	open := func() error {
		w, err := c.NewWriter(thethings.WithSpool(dir))
		if err == nil {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_ = w.Close(ctx)
		}
		return err
	}

	ack := filepath.Join(dir, "ACKED")
	good, err := os.ReadFile(ack)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(ack, nil, 0o600))
	err = open()
	assert.ErrorIs(t, err, thethings.ErrSpoolCorrupt)
	assert.ErrorContains(t, err, ack)
	require.NoError(t, os.WriteFile(ack, good, 0o600))

	segs := segments(t, dir)
	require.NoError(t, os.Remove(segs[0]))
	err = open()
	assert.ErrorIs(t, err, thethings.ErrSpoolCorrupt)
	assert.ErrorContains(t, err, segs[1])
}

// TestSpoolDamageWhileOpenStopsTheWriter: a record damaged while the
// writer runs is found when the writer reads it: the writer stops sending
// (rather than spin or skip values) and Close reports ErrSpoolCorrupt at
// once; the values stay in the spool.
func TestSpoolDamageWhileOpenStopsTheWriter(t *testing.T) {
	t.Parallel()
	// damage changes one segment file, past what the reader has buffered.
	for name, damage := range map[string]func(t *testing.T, data []byte, f *os.File){
		"payload byte flipped": func(t *testing.T, data []byte, f *os.File) {
			at := int64(len(data) * 3 / 4)
			require.Greater(t, at, int64(64<<10))
			_, err := f.WriteAt([]byte{data[at] ^ 0x20}, at)
			require.NoError(t, err)
		},
		// A length must not be trusted with an allocation before its
		// header's checksum was checked.
		"record length huge": func(t *testing.T, data []byte, f *os.File) {
			off := len("TTSPOOL1")
			for off < len(data)*3/4 {
				off += 12 + int(binary.LittleEndian.Uint32(data[off:]))
			}
			require.Greater(t, off, 64<<10)
			_, err := f.WriteAt([]byte{0xf0, 0xff, 0xff, 0xff}, int64(off))
			require.NoError(t, err)
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, _ := setup(t)
			px := startProxy(t, srv.URL())
			px.down()
			_, c := setup(t, px.url)
			dir := t.TempDir()
			w := mustWriter(t, c, thethings.WithSpool(dir), thethings.WithBatchSize(10), thethings.WithFlushInterval(0))
			for i := 0; i < 3000; i += 100 {
				require.NoError(t, w.Add(context.Background(), intValues("n", i, 100)...))
			}
			segs := segments(t, dir)
			require.Len(t, segs, 1)
			data, err := os.ReadFile(segs[0])
			require.NoError(t, err)
			f, err := os.OpenFile(segs[0], os.O_RDWR, 0)
			require.NoError(t, err)
			damage(t, data, f)
			require.NoError(t, f.Close())
			px.up()

			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = w.Close(ctx)
			runtime.ReadMemStats(&after)
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<30), "bytes allocated while the damage was met")
			require.ErrorIs(t, err, thethings.ErrSpoolCorrupt)
			assert.ErrorContains(t, err, segs[0])
			assert.NotErrorIs(t, err, context.DeadlineExceeded, "Close waited for its context")
			assertStoredOnce(t, srv, "n", srv.StoredCount(sentinelToken, "n")) // nothing skipped
			assert.Less(t, srv.StoredCount(sentinelToken, "n"), 2300)
		})
	}
}
