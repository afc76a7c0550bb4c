package thethings_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

func TestFirmwaresAndLatest(t *testing.T) {
	srv, c := setup(t)
	ctx := context.Background()
	_, ok, err := c.LatestFirmware(ctx)
	require.NoError(t, err)
	assert.False(t, ok, "no firmware yet")

	id9 := srv.AddFirmware("9", []byte("nine"))
	id10 := srv.AddFirmware("10", []byte("ten"))
	srv.AddFirmware("2", []byte("two"))
	list, err := c.Firmwares(ctx)
	require.NoError(t, err)
	require.Len(t, list, 3)
	assert.Equal(t, thethings.Firmware{ID: id9, Version: "9"}, list[0])
	latest, ok, err := c.LatestFirmware(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, thethings.Firmware{ID: id10, Version: "10"}, latest, "numbers compare as numbers, not text")
	assert.Equal(t, 3, srv.Requests(thethingstest.RouteFirmwares), "one request per call")
}

func TestLatestFirmwareSemver(t *testing.T) {
	srv, c := setup(t)
	srv.AddFirmware("v1.9.0", nil)
	want := srv.AddFirmware("1.10.0", nil)
	srv.AddFirmware("1.10.0-rc.1", nil)
	latest, ok, err := c.LatestFirmware(context.Background())
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, want, latest.ID)
}

func TestFirmwaresHostileAnswer(t *testing.T) {
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"status":"success","firmwares":[{"_id":{"$oid":1},"version":1}]}`)
	}))
	_, err := c.Firmwares(context.Background())
	require.ErrorIs(t, err, thethings.ErrInvalidValue)
	assert.NotContains(t, err.Error(), sentinelToken)
}

func TestDownloadFirmware(t *testing.T) {
	srv, c := setup(t)
	data := make([]byte, 300<<10)
	rand.NewChaCha8([32]byte{1}).Read(data) // the same random bytes every run
	id := srv.AddFirmware("3", data)
	var got bytes.Buffer
	n, err := c.DownloadFirmware(context.Background(), id, &got, int64(len(data)))
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), n)
	assert.True(t, bytes.Equal(data, got.Bytes()))
	assert.Equal(t, 1, srv.Requests(thethingstest.RouteFirmwareDownload))
}

func TestDownloadFirmwareResumesCutDownload(t *testing.T) {
	srv, c := setup(t, thethingstest.WithFirmwareFaults(thethingstest.FirmwareFaults{CutAfter: 70_000}))
	data := make([]byte, 200_000)
	rand.NewChaCha8([32]byte{2}).Read(data)
	id := srv.AddFirmware("3", data)
	var got bytes.Buffer
	n, err := c.DownloadFirmware(context.Background(), id, &got, 1<<20)
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), n)
	assert.True(t, bytes.Equal(data, got.Bytes()), "the resumed parts join into the file")
	assert.Equal(t, 3, srv.Requests(thethingstest.RouteFirmwareDownload), "70000+70000+60000 bytes")
}

func TestDownloadFirmwareWithoutRangeFailsClearly(t *testing.T) {
	srv, c := setup(t, thethingstest.WithFirmwareFaults(thethingstest.FirmwareFaults{CutAfter: 70_000, IgnoreRange: true}))
	data := make([]byte, 200_000)
	rand.NewChaCha8([32]byte{3}).Read(data)
	id := srv.AddFirmware("3", data)
	var got bytes.Buffer
	n, err := c.DownloadFirmware(context.Background(), id, &got, 1<<20)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot resume")
	assert.NotContains(t, err.Error(), sentinelToken)
	assert.Equal(t, int64(70_000), n)
	assert.True(t, bytes.Equal(data[:70_000], got.Bytes()), "w holds a prefix of the file, never a mix")
}

func TestDownloadFirmwareMaxBytes(t *testing.T) {
	srv, c := setup(t)
	data := make([]byte, 100_000)
	rand.NewChaCha8([32]byte{4}).Read(data)
	id := srv.AddFirmware("3", data)
	var got bytes.Buffer
	_, err := c.DownloadFirmware(context.Background(), id, &got, 99_999)
	require.ErrorIs(t, err, thethings.ErrInvalidValue)
	assert.Zero(t, got.Len(), "an announced length over the bound writes nothing")

	// Without Content-Length the bound holds while streaming.
	chunked := func(w http.ResponseWriter, _ *http.Request) {
		for range 10 {
			_, _ = w.Write(data[:10_000])
			http.NewResponseController(w).Flush()
		}
	}
	_, c2 := setup(t, http.HandlerFunc(chunked))
	got.Reset()
	_, err = c2.DownloadFirmware(context.Background(), "x", &got, 25_000)
	require.ErrorIs(t, err, thethings.ErrInvalidValue)
	assert.LessOrEqual(t, got.Len(), 25_000)
}

func TestDownloadFirmwareBadInput(t *testing.T) {
	srv, c := setup(t)
	ctx := context.Background()
	for _, tc := range []struct {
		id  string
		w   *bytes.Buffer
		max int64
	}{{"", new(bytes.Buffer), 1}, {"a", nil, 1}, {"a", new(bytes.Buffer), 0}} {
		var w interface{ Write([]byte) (int, error) }
		if tc.w != nil {
			w = tc.w
		}
		_, err := c.DownloadFirmware(ctx, tc.id, w, tc.max)
		assert.ErrorIs(t, err, thethings.ErrInvalidValue)
	}
	assert.Zero(t, srv.Requests(thethingstest.RouteFirmwareDownload))
	// An id is one path segment: "../x" cannot reach another route.
	_, err := c.DownloadFirmware(ctx, "../../x", new(bytes.Buffer), 10)
	require.ErrorIs(t, err, thethings.ErrNotFound)
	assert.Equal(t, 1, srv.Requests(thethingstest.RouteFirmwareDownload))
	assert.NotContains(t, err.Error(), sentinelToken)
}

func TestCallFunction(t *testing.T) {
	srv, c := setup(t, thethingstest.WithFunction("echo", func(_ context.Context, p json.RawMessage) (any, error) {
		return map[string]json.RawMessage{"got": p}, nil
	}))
	got, err := c.CallFunction(context.Background(), "echo", map[string]int{"n": 7})
	require.NoError(t, err)
	assert.JSONEq(t, `{"got":{"n":7}}`, string(got))
	assert.Equal(t, 1, srv.Requests(thethingstest.FunctionRoute("echo")))

	_, err = c.CallFunction(context.Background(), "nope", nil)
	require.ErrorIs(t, err, thethings.ErrNotFound)
}

// A function has effects: whatever goes wrong once the request was sent,
// it is called exactly once.
func TestCallFunctionNeverRetriedOnceSent(t *testing.T) {
	cases := map[string]struct {
		f    thethingstest.Function
		opts []any // of the client
	}{
		"500": {f: func(context.Context, json.RawMessage) (any, error) { return nil, errors.New("boom") }},
		"cut connection": {f: func(context.Context, json.RawMessage) (any, error) {
			panic(http.ErrAbortHandler)
		}},
		"timeout": {
			f: func(ctx context.Context, _ json.RawMessage) (any, error) {
				<-ctx.Done() // until the client gives up and closes the connection
				return nil, ctx.Err()
			},
			opts: []any{thethings.WithHTTPClient(&http.Client{Timeout: 50 * time.Millisecond})},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv, c := setup(t, append(tc.opts, thethingstest.WithFunction("act", tc.f))...)
			_, err := c.CallFunction(context.Background(), "act", "x")
			require.ErrorIs(t, err, thethings.ErrOutcomeUnknown)
			assert.NotContains(t, err.Error(), sentinelToken)
			assert.Equal(t, 1, srv.Requests(thethingstest.FunctionRoute("act")), "called exactly once")
		})
	}
}

func TestCallFunctionBadInput(t *testing.T) {
	srv, c := setup(t)
	for _, name := range []string{"", "a/b", "a b", "..", "é", strings.Repeat("a", 129)} {
		_, err := c.CallFunction(context.Background(), name, nil)
		assert.ErrorIs(t, err, thethings.ErrInvalidValue, "%q", name)
	}
	_, err := c.CallFunction(context.Background(), "f", func() {})
	assert.ErrorIs(t, err, thethings.ErrInvalidValue)
	assert.Zero(t, srv.Requests(thethingstest.RouteFunction)+srv.Requests(thethingstest.RouteOther), "refused before any I/O")
}

func TestCallFunctionAnswerBounded(t *testing.T) {
	big := strings.Repeat("a", 1<<20)
	srv, c := setup(t, thethingstest.WithFunction("big", func(context.Context, json.RawMessage) (any, error) { return big, nil }))
	_, err := c.CallFunction(context.Background(), "big", nil)
	require.ErrorIs(t, err, thethings.ErrInvalidValue)
	assert.Equal(t, 1, srv.Requests(thethingstest.FunctionRoute("big")))
}

func TestResources(t *testing.T) {
	_, c := setup(t)
	ctx := context.Background()
	keys, err := c.Resources(ctx)
	require.NoError(t, err)
	assert.Empty(t, keys)
	require.NoError(t, c.Write(ctx, []thethings.Value{{Key: "temp", Value: 1}, {Key: "hum", Value: 2}}))
	keys, err = c.Resources(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"hum", "temp"}, keys)
}

// A server that cuts every resumed answer before its first byte makes no
// progress: the download gives up after MaxRetries such attempts.
func TestDownloadFirmwareStalledResumeIsBounded(t *testing.T) {
	var requests atomic.Int32
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Length", "100")
		if r.Header.Get("Range") != "" {
			w.Header().Set("Content-Range", "bytes 10-99/100")
			w.WriteHeader(http.StatusPartialContent)
		} else {
			_, _ = w.Write(make([]byte, 10))
		}
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}))
	var got bytes.Buffer
	n, err := c.DownloadFirmware(context.Background(), "x", &got, 1000)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "download cut after 10 bytes")
	assert.NotContains(t, err.Error(), sentinelToken)
	assert.Equal(t, int64(10), n)
	assert.Equal(t, int32(1+fastRetryPolicy.MaxRetries), requests.Load(), "the first answer, then MaxRetries resumes without progress")
}

// A first answer without Content-Length, cut, then resumed: the 206 tells
// the file's length, which bounds the rest.
func TestDownloadFirmwareChunkedThenResumed(t *testing.T) {
	file := make([]byte, 20)
	rand.NewChaCha8([32]byte{5}).Read(file)
	_, c := setup(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") == "" {
			_, _ = w.Write(file[:10]) // chunked: no length
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}
		assert.Equal(t, "bytes=10-", r.Header.Get("Range"))
		w.Header().Set("Content-Range", "bytes 10-19/20")
		w.Header().Set("Content-Length", "10")
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(file[10:])
	}))
	var got bytes.Buffer
	n, err := c.DownloadFirmware(context.Background(), "x", &got, 100)
	require.NoError(t, err)
	assert.Equal(t, int64(20), n)
	assert.Equal(t, file, got.Bytes())

	got.Reset()
	_, err = c.DownloadFirmware(context.Background(), "x", &got, 15)
	require.ErrorIs(t, err, thethings.ErrInvalidValue, "the 206 says 20 bytes, over the bound")
	assert.Equal(t, 10, got.Len())
}
