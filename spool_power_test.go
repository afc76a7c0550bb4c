//go:build unix

package thethings_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// TestSpoolHeaderlessLastSegmentOpens: a crash (or a full disk) between
// creating a segment and writing its header leaves it empty: the spool
// opens and sends every value.
func TestSpoolHeaderlessLastSegmentOpens(t *testing.T) {
	t.Parallel()
	for name, content := range map[string][]byte{"empty": nil, "half a header": []byte("TTSP")} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			spoolOffline(t, dir, 0, 30)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "00000000000000000030.seg"), content, 0o600))
			srv, _ := setup(t)
			drain(t, srv, dir)
			assertStoredOnce(t, srv, "n", 30)
		})
	}
}

// TestSpoolFlippedBitInLastRecordIsCorrupt: damage a crash cannot explain,
// even in the last record, is ErrSpoolCorrupt naming the file, never values
// dropped in silence.
func TestSpoolFlippedBitInLastRecordIsCorrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spoolOffline(t, dir, 0, 20)
	seg := segments(t, dir)[0]
	data, err := os.ReadFile(seg)
	require.NoError(t, err)
	data[len(data)-10] ^= 0x04
	require.NoError(t, os.WriteFile(seg, data, 0o600))
	_, c := setup(t, offlineURL)
	_, err = c.NewWriter(thethings.WithSpool(dir))
	assert.ErrorIs(t, err, thethings.ErrSpoolCorrupt)
	assert.ErrorContains(t, err, seg)
}

// TestSpoolRefusesWhatIsNotARegularFile: a FIFO named ACKED, or a symlink
// named LOCK, is an error within a second naming it; the symlink is not
// followed.
func TestSpoolRefusesWhatIsNotARegularFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		make func(p, target string) error
	}{
		{"ACKED", func(p, _ string) error { return syscall.Mkfifo(p, 0o600) }},
		{"LOCK", func(p, target string) error { return os.Symlink(target, p) }},
		{"ACKED", func(p, target string) error { return os.Symlink(target, p) }},
	} {
		root := t.TempDir()
		dir := filepath.Join(root, "spool")
		spoolOffline(t, dir, 0, 10)
		target := filepath.Join(root, "elsewhere")
		p := filepath.Join(dir, tc.name)
		require.NoError(t, os.Remove(p))
		require.NoError(t, tc.make(p, target))
		done := make(chan error, 1)
		_, c := setup(t, offlineURL)
		go func() {
			w, err := c.NewWriter(thethings.WithSpool(dir))
			if err == nil {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				_ = w.Close(ctx)
			}
			done <- err
		}()
		select {
		case err := <-done:
			assert.ErrorIs(t, err, thethings.ErrSpoolCorrupt, tc.name)
			assert.ErrorContains(t, err, p)
		case <-time.After(time.Second):
			t.Fatalf("%s: NewWriter hangs", tc.name)
		}
		_, err := os.Lstat(target)
		assert.ErrorIs(t, err, os.ErrNotExist, "the symlink was followed")
	}
}

// TestSpoolRefusesAnUnsafeDir: a spool dir others may write in is an
// invalid option; the dir the Writer makes is 0700.
func TestSpoolRefusesAnUnsafeDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new", "spool")
	spoolOffline(t, dir, 0, 10)
	st, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	require.NoError(t, os.Chmod(dir, 0o777))
	_, c := setup(t, offlineURL)
	_, err = c.NewWriter(thethings.WithSpool(dir))
	assert.ErrorIs(t, err, thethings.ErrInvalidOption)
	assert.ErrorContains(t, err, "writable by others")
}

// TestSpoolOfAnotherThing: a spool records whose values it holds (a hash
// of the token, never the token): a Writer of another thing gets
// ErrSpoolForeign and sends nothing.
func TestSpoolOfAnotherThing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spoolOffline(t, dir, 0, 10)
	srv, _ := setup(t)
	other, err := thethings.NewClient("another-things-token", thethings.WithBaseURL(srv.URL()))
	require.NoError(t, err)
	_, err = other.NewWriter(thethings.WithSpool(dir))
	assert.ErrorIs(t, err, thethings.ErrSpoolForeign)
	assert.Zero(t, srv.Requests(thethingstest.RouteWrite))
	for _, name := range []string{"ACKED", "LOCK"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.False(t, bytes.Contains(b, []byte(sentinelToken)), name)
	}
	drain(t, srv, dir)
	assertStoredOnce(t, srv, "n", 10)
}

// slowStore is a proxy that carries out every write slowly, whatever the
// client does meanwhile: a request the client abandoned is still stored.
type slowStore struct {
	target string
	delay  time.Duration
	writes chan struct{} // a write arrived
	wg     sync.WaitGroup
}

func (s *slowStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.wg.Add(1)
	defer s.wg.Done()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if r.Method == http.MethodPost {
		select {
		case s.writes <- struct{}{}:
		default:
		}
		time.Sleep(s.delay) // the platform at work, not a signal
	}
	req, err := http.NewRequestWithContext(context.Background(), r.Method, s.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// TestSpoolReopenAfterAbandonedRequestStoresOnce: a Writer is closed while
// its request is on its way (the platform stores it a moment later); a
// Writer opened on the spool at once waits until that request cannot be in
// flight any more before reading back, and stores nothing twice.
func TestSpoolReopenAfterAbandonedRequestStoresOnce(t *testing.T) {
	t.Parallel()
	srv, _ := setup(t)
	slow := &slowStore{target: strings.TrimSuffix(srv.URL(), "/v2/"), delay: 200 * time.Millisecond, writes: make(chan struct{}, 1)}
	px := httptest.NewServer(slow)
	defer px.Close()
	defer slow.wg.Wait()
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	_, c := setup(t, px.URL+"/v2/", thethings.WithHTTPClient(hc))
	dir := t.TempDir()
	const rounds, per = 8, 20
	start := time.Now().Add(-time.Hour)
	for r := range rounds {
		w := mustWriter(t, c, thethings.WithSpool(dir), thethings.WithBatchSize(per), thethings.WithFlushInterval(0))
		require.NoError(t, w.Add(context.Background(), intValues("n", r*per, per, start.Add(time.Duration(r)*time.Minute))...))
		select {
		case <-slow.writes:
		case <-time.After(10 * time.Second):
			t.Fatal("no write")
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := w.Close(ctx) // abandons the write on its way
		require.Error(t, err)
		require.False(t, errors.Is(err, thethings.ErrSpoolCorrupt), "%v", err)
	}
	drain(t, srv, dir)
	slow.wg.Wait()
	assertStoredOnce(t, srv, "n", rounds*per)
	assert.Zero(t, srv.Duplicates())
}
