package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a bytes.Buffer safe for the printer and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var summary = regexp.MustCompile(`readings taken (\d+), written (\d+), not written (\d+)`)

// counts returns taken and written from the summary line.
func counts(t *testing.T, out string) (taken, written int) {
	t.Helper()
	m := summary.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	taken, _ = strconv.Atoi(m[1])
	written, _ = strconv.Atoi(m[2])
	assert.Equal(t, "0", m[3], out)
	return taken, written
}

func number(t *testing.T, out, pattern string) int {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(out)
	require.NotNil(t, m, "no %q in\n%s", pattern, out)
	n, _ := strconv.Atoi(m[1])
	return n
}

// The embedded scenario: an outage that loses nothing, a setting pushed by
// a backend, and every reading in the emulator at the end.
func TestDeviceSurvivesOutageAndFollowsSettings(t *testing.T) {
	t.Parallel()
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		testDeviceOutage(t)
	})
	t.Run("spool", func(t *testing.T) {
		t.Parallel()
		testDeviceOutage(t, "-spool", t.TempDir())
	})
}

func testDeviceOutage(t *testing.T, args ...string) {
	var out syncBuffer
	err := run(context.Background(), append([]string{"-duration", "5s", "-interval", "50ms"}, args...), &out, &out, func(string) string { return "" })
	require.NoError(t, err)
	s := out.String()
	t.Log("\n" + s)

	assert.Contains(t, s, "sampling temperature every 50ms")
	assert.Contains(t, s, "subscription: connected\n")
	storedAtDown := number(t, s, `link down \(connections cut, new ones refused\); (\d+) readings stored`)
	storedAtUp := number(t, s, `link up; (\d+) readings stored`)
	assert.Equal(t, storedAtDown, storedAtUp, "nothing reaches the platform while the link is down")
	assert.Contains(t, s, "subscription: disconnected")
	assert.Contains(t, s, "subscription: connected again")
	assert.Regexp(t, `link back, all \d+ readings taken so far are written`, s)
	assert.Contains(t, s, "backend: sets $settings.interval to 25")
	assert.Contains(t, s, "settings: interval 50ms -> 25ms")
	assert.NotContains(t, s, "writer:")

	taken, written := counts(t, s)
	assert.GreaterOrEqual(t, taken, 20, "a loaded machine samples late, but it samples")
	assert.Equal(t, taken, written)
	assert.Equal(t, taken, number(t, s, `the emulator holds (\d+) temperature readings`))
}

// SIGINT (here: ctx cancelled) stops the loop; Close sends what is
// buffered, so the emulator holds every reading taken.
func TestDeviceShutsDownCleanlyOnInterrupt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	go func() {
		// Interrupt once the device has sampled for a while, however long
		// it took to start on a loaded machine.
		for !strings.Contains(out.String(), "device: sampling") {
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		time.Sleep(400 * time.Millisecond)
		cancel()
	}()
	err := run(ctx, []string{"-duration", "10s", "-interval", "20ms"}, &out, &out, func(string) string { return "" })
	require.NoError(t, err)
	s := out.String()
	assert.Contains(t, s, "interrupted, shut down cleanly")
	assert.NotContains(t, s, "link down", "interrupted before the outage")
	taken, written := counts(t, s)
	assert.GreaterOrEqual(t, taken, 3)
	assert.Equal(t, taken, written)
	assert.Equal(t, taken, number(t, s, `the emulator holds (\d+) temperature readings`))
}

// With THETHINGS_TOKEN the device talks to the given platform (here an
// emulator the test controls): it starts from the stored setting, follows a
// change pushed while it runs, and stores readings stamped by the device
// with their positions.
func TestDeviceWithTokenFollowsPushedSetting(t *testing.T) {
	t.Parallel()
	const token = "a-real-looking-thing-token-123456"
	srv := thethingstest.NewServer(t, thethingstest.WithThingTokens(token))
	defer srv.Close()
	ctx := context.Background()
	backend, err := thethings.NewClient(token, thethings.WithBaseURL(srv.URL()))
	require.NoError(t, err)
	require.NoError(t, backend.SetSetting(ctx, "interval", 40))

	// The device runs until it has followed the change, however long that
	// takes on a loaded machine (SIGINT, here: runCtx cancelled).
	runCtx, interrupt := context.WithCancel(ctx)
	defer interrupt()
	var out syncBuffer
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		for srv.OpenSubscriptions() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // some readings at 40ms first
		assert.NoError(t, backend.SetSetting(ctx, "interval", 20))
		for !strings.Contains(out.String(), "settings: interval 40ms -> 20ms") && runCtx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		interrupt()
	}()
	env := map[string]string{"THETHINGS_TOKEN": token, "THETHINGS_BASE_URL": srv.URL()}
	start := time.Now()
	err = run(runCtx, []string{"-duration", "0", "-interval", "100ms"}, &out, &out, func(k string) string { return env[k] })
	interrupt()
	<-pushed
	require.NoError(t, err)
	s := out.String()
	assert.Contains(t, s, "device: thing a-re…")
	assert.NotContains(t, s, token)
	assert.Contains(t, s, "sampling temperature every 40ms")
	assert.Contains(t, s, "settings: interval 40ms -> 20ms")

	taken, written := counts(t, s)
	assert.Equal(t, taken, written)
	stored := srv.Stored(token, key)
	require.Len(t, stored, taken)
	for i, r := range stored {
		require.NotNil(t, r.Geo, "reading %d has its position", i)
		assert.False(t, r.Datetime.Before(start.Truncate(time.Millisecond)), "device timestamp")
		if i > 0 {
			assert.True(t, r.Datetime.Before(stored[i-1].Datetime), "one reading per tick, in order (newest first)")
		}
	}
	assert.Zero(t, srv.Duplicates())
}

func TestDeviceBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-interval", "0"}, {"-duration", "-1s"}, {"-nope"}} {
		assert.Error(t, run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" }), "%q", args)
	}
}
