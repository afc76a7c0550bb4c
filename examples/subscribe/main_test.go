package main

import (
	"bytes"
	"context"
	"encoding/json"
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

// The embedded demo: streams cut every 700ms, and still every stored value
// of the followed keys is received exactly once. The demo runs until two
// cuts and 16 changes were seen, however long that takes on a busy machine.
func TestSubscribeEmbeddedReconnectsWithoutLoss(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	until := make(chan struct{})
	done := make(chan error, 1)
	stop := sync.OnceFunc(func() { close(until) })
	defer stop() // a failed wait still ends the demo
	go func() {
		done <- runUntil(context.Background(), until, []string{"-duration", "0", "-cut", "700ms"}, &out, &out, func(string) string { return "" })
	}()
	changes := regexp.MustCompile(`(?m)^\s+\S+s  (live|backfill)  `)
	require.Eventually(t, func() bool {
		s := out.String()
		return strings.Count(s, "disconnected: ") >= 2 && strings.Count(s, "reconnecting") >= 2 &&
			strings.Contains(s, "live      temperature") && len(changes.FindAllString(s, -1)) >= 16
	}, 60*time.Second, 10*time.Millisecond, "two cuts and 16 changes in\n%s", &out)
	stop()
	require.NoError(t, <-done)
	s := out.String()
	t.Log("\n" + s)

	assert.Contains(t, s, "streams cut every 700ms")
	assert.Regexp(t, `(?m)^\s+\S+s  connected$`, s)
	assert.NotContains(t, s, "interrupted")

	m := regexp.MustCompile(`checked against the emulator: (\d+) stored, 0 missed, 0 repeated`).FindStringSubmatch(s)
	require.NotNil(t, m, "nothing missed, nothing repeated")
	n, _ := strconv.Atoi(m[1])
	assert.Greater(t, n, 15)
	assert.Contains(t, s, "received "+m[1]+" values: ")
}

// With THETHINGS_TOKEN it follows the given platform (an emulator the test
// controls). A value stored while the stream is up but never pushed (Seed)
// stands for one written during a gap: after the cut, it arrives as
// backfill; a write after the reconnect arrives live, as a change.
func TestSubscribeWithTokenBackfillsTheGap(t *testing.T) {
	t.Parallel()
	const token = "a-real-looking-thing-token-123456"
	srv := thethingstest.NewServer(t, thethingstest.WithThingTokens(token), thethingstest.WithFaults(thethingstest.Faults{StreamCutAfter: 600 * time.Millisecond}))
	defer srv.Close()
	writer, err := thethings.NewClient(token, thethings.WithBaseURL(srv.URL()))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	env := map[string]string{"THETHINGS_TOKEN": token, "THETHINGS_BASE_URL": srv.URL()}
	go func() {
		done <- run(ctx, []string{"-keys", "door", "-duration", "0"}, &out, &out, func(k string) string { return env[k] })
	}()

	waitFor := func(substr string) {
		t.Helper()
		require.Eventually(t, func() bool { return strings.Contains(out.String(), substr) }, 10*time.Second, 10*time.Millisecond, "no %q in\n%s", substr, &out)
	}
	waitFor("connected\n")
	require.NoError(t, writer.Write(ctx, []thethings.Value{{Key: "door", Value: "closed"}}))
	waitFor(`live      door = "closed"`)
	require.NoError(t, srv.Seed(token, "door", thethingstest.Record{Value: json.RawMessage(`"open"`), Datetime: time.Now()}))
	waitFor("reconnecting")
	waitFor(`backfill  door: "closed" -> "open"`)
	require.NoError(t, writer.Write(ctx, []thethings.Value{{Key: "door", Value: "closed"}, {Key: "ignored", Value: 1}}))
	waitFor(`live      door: "open" -> "closed"`)

	cancel() // Ctrl-C
	require.NoError(t, <-done)
	s := out.String()
	t.Log("\n" + s)
	assert.Contains(t, s, "following thing a-re…")
	assert.NotContains(t, s, token)
	assert.NotContains(t, s, "ignored")
	assert.Contains(t, s, "interrupted")
	assert.Contains(t, s, "received 3 values: 2 live, 1 backfilled after reconnects")
}

// A token the platform does not know ends the subscription with an error.
func TestSubscribeUnknownThing(t *testing.T) {
	t.Parallel()
	srv := thethingstest.NewServer(t)
	defer srv.Close()
	env := map[string]string{"THETHINGS_TOKEN": "not-a-thing-token", "THETHINGS_BASE_URL": srv.URL()}
	err := run(context.Background(), []string{"-duration", "5s"}, &bytes.Buffer{}, &bytes.Buffer{}, func(k string) string { return env[k] })
	require.ErrorIs(t, err, thethings.ErrThingNotFound)
	assert.NotContains(t, err.Error(), "not-a-thing-token")
}

func TestSubscribeBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-cut", "-1s"}, {"-keys", "bad key"}, {"-keepalive", "10ms", "-duration", "1s"}} {
		assert.Error(t, run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}, func(string) string { return "" }), "%q", args)
	}
}
