package main

import (
	"bytes"
	"context"
	"fmt"
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

// number is the first group of pattern, a count, in out.
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
	for _, mode := range []string{"memory", "spool"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			args := []string{"-duration", "5s", "-interval", "50ms"}
			if mode == "spool" {
				args = append(args, "-spool", t.TempDir())
			}
			var out syncBuffer
			require.NoError(t, run(context.Background(), args, &out, &out, func(string) string { return "" }))
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

			taken := number(t, s, `readings taken (\d+)`)
			assert.GreaterOrEqual(t, taken, 20, "a loaded machine samples late, but it samples")
			assert.Contains(t, s, fmt.Sprintf("readings taken %d, written %d, not written 0", taken, taken))
			assert.Equal(t, taken, number(t, s, `the emulator holds (\d+) temperature readings`))
		})
	}
}

// SIGINT (here: ctx cancelled) stops the loop; Close sends what is
// buffered, so the emulator holds every reading taken.
func TestDeviceShutsDownCleanlyOnInterrupt(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	// The outage starts at 30% of -duration: long after the interrupt,
	// however slow the machine.
	stop := runDevice(t, []string{"-duration", "60s", "-interval", "20ms"}, &out, nil)
	// Interrupt once the embedded emulator holds 3 readings (the first
	// flush), read from it as any client would.
	var base string
	require.Eventually(t, func() bool {
		m := regexp.MustCompile(`embedded emulator at (\S+)`).FindStringSubmatch(out.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	}, 10*time.Second, 5*time.Millisecond, "the emulator's address in\n%s", &out)
	c, err := thethings.NewClient(demoToken, thethings.WithBaseURL(base))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		p, err := c.Read(context.Background(), key, &thethings.ReadOptions{Limit: 3})
		return err == nil && len(p.Values) == 3
	}, 10*time.Second, 10*time.Millisecond, "3 readings written")
	require.NoError(t, stop())
	s := out.String()
	assert.Contains(t, s, "interrupted, shut down cleanly")
	assert.NotContains(t, s, "link down", "interrupted before the outage")
	taken := number(t, s, `readings taken (\d+)`)
	assert.GreaterOrEqual(t, taken, 3)
	assert.Contains(t, s, fmt.Sprintf("readings taken %d, written %d, not written 0", taken, taken))
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
	// takes on a loaded machine (SIGINT, here: stop).
	var out syncBuffer
	env := map[string]string{"THETHINGS_TOKEN": token, "THETHINGS_BASE_URL": srv.URL()}
	start := time.Now()
	stop := runDevice(t, []string{"-duration", "0", "-interval", "100ms"}, &out, env)
	// Some readings at 40ms first: the Writer's first flush.
	require.Eventually(t, func() bool { return srv.OpenSubscriptions() > 0 && srv.StoredCount(token, key) > 0 }, 10*time.Second, 10*time.Millisecond, "subscribed and written in\n%s", &out)
	require.NoError(t, backend.SetSetting(ctx, "interval", 20))
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "settings: interval 40ms -> 20ms") }, 10*time.Second, 10*time.Millisecond, "the change followed in\n%s", &out)
	require.NoError(t, stop())
	s := out.String()
	assert.Contains(t, s, "device: thing a-re…")
	assert.NotContains(t, s, token)
	assert.Contains(t, s, "sampling temperature every 40ms")
	assert.Contains(t, s, "settings: interval 40ms -> 20ms")

	taken := number(t, s, `readings taken (\d+)`)
	assert.Contains(t, s, fmt.Sprintf("readings taken %d, written %d, not written 0", taken, taken))
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

// runDevice runs the device in the background until stop, which
// interrupts it (SIGINT, here: ctx cancelled) and returns run's error. A
// test that fails earlier stops it at cleanup.
func runDevice(t *testing.T, args []string, out *syncBuffer, env map[string]string) (stop func() error) {
	ctx, interrupt := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, args, out, out, func(k string) string { return env[k] }) }()
	stop = sync.OnceValue(func() error { interrupt(); return <-errc })
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestDeviceBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-interval", "0"}, {"-duration", "-1s"}, {"-nope"}} {
		assert.Error(t, run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" }), "%q", args)
	}
}
