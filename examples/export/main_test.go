package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/thethings-go/thethings/thethingstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func noEnv(string) string { return "" }

// assertRows checks that the CSV data holds a header and the embedded
// data set's rows, newest first, within [from, to) (zero: open).
func assertRows(t *testing.T, data []byte, from, to time.Time) {
	t.Helper()
	var want [][]string
	for i := demoCount - 1; i >= 0; i-- {
		at := demoStart.Add(time.Duration(i) * time.Minute)
		if !from.IsZero() && at.Before(from) || !to.IsZero() && !at.Before(to) {
			continue
		}
		lat, long := "", ""
		if i%10 == 0 {
			lat, long = "41.3874", "2.1686"
		}
		want = append(want, []string{at.Format("2006-01-02T15:04:05.000Z"), "temperature", fmt.Sprintf("%.1f", 20+float64(i%100)/10), lat, long})
	}
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	require.NoError(t, err)
	require.NotEmpty(t, rows)
	require.Equal(t, []string{"datetime", "key", "value", "lat", "long"}, rows[0])
	assert.Equal(t, want, rows[1:])
}

func TestExportWholeHistoryCSV(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(context.Background(), nil, &stdout, &stderr, noEnv))
	assertRows(t, stdout.Bytes(), time.Time{}, time.Time{})
	assert.Contains(t, stderr.String(), "embedded emulator")
	assert.Contains(t, stderr.String(), "export: 1000 values, back to 2024-05-03T18:40:00Z")
	assert.Contains(t, stderr.String(), "export: done, 5000 values")
}

func TestExportWindowJSONLines(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-format", "jsonl", "-from", "2024-05-02", "-to", "20240503000000"}
	require.NoError(t, run(context.Background(), args, &stdout, &stderr, noEnv))
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	require.Len(t, lines, 24*60, "one day: From inclusive, To exclusive")
	assert.Equal(t, `{"datetime":"2024-05-02T23:59:00.000Z","key":"temperature","value":27.9}`, lines[0])
	assert.Equal(t, `{"datetime":"2024-05-02T00:00:00.000Z","key":"temperature","value":24.0,"geo":{"lat":41.3874,"long":2.1686}}`, lines[len(lines)-1])
	for _, l := range lines {
		require.True(t, json.Valid([]byte(l)), l)
	}
}

// cancelAfter is a stderr that cancels the export once it has printed a
// progress line containing marker: the test's Ctrl-C.
type cancelAfter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	cancel context.CancelFunc
}

func (w *cancelAfter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.marker) {
		w.cancel()
	}
	return len(p), nil
}

func TestExportResumesExactly(t *testing.T) {
	for _, format := range []string{"csv", "jsonl"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out."+format)
			stateFile := filepath.Join(dir, "export.state")
			args := []string{"-format", format, "-out", out, "-state", stateFile, "-from", "2024-05-01T06:00:00Z"}

			// The reference: one uninterrupted export of the same window,
			// without -state.
			var ref bytes.Buffer
			require.NoError(t, run(context.Background(), append([]string{"-format", format}, args[6:]...), &ref, &bytes.Buffer{}, noEnv))

			// First run: interrupted after the second page.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stderr := &cancelAfter{marker: "export: page 2, ", cancel: cancel}
			err := run(ctx, args, &bytes.Buffer{}, stderr, noEnv)
			require.ErrorIs(t, err, context.Canceled)
			assert.Contains(t, stderr.buf.String(), "interrupted after 1999 values; run the same command to resume")
			st, err := loadState(stateFile)
			require.NoError(t, err)
			assert.Equal(t, 1999, st.Exported, "a page after the first repeats the previous page's oldest value, which Read drops")
			assert.False(t, st.Done)

			// A crash after a page was written but before its cursor was
			// saved leaves extra output behind: the resume must cut it.
			f, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteString("half a page that was never saved\n")
			require.NoError(t, err)
			require.NoError(t, f.Close())

			// Second run: resumes and finishes.
			var stderr2 bytes.Buffer
			require.NoError(t, run(context.Background(), args, &bytes.Buffer{}, &stderr2, noEnv))
			assert.Contains(t, stderr2.String(), "resuming after 1999 values (2 pages)")
			got, err := os.ReadFile(out)
			require.NoError(t, err)
			assert.Equal(t, ref.String(), string(got), "interrupted + resumed export equals an uninterrupted one")
			if format == "csv" {
				assertRows(t, got, time.Date(2024, 5, 1, 6, 0, 0, 0, time.UTC), time.Time{})
			} else {
				assert.Len(t, strings.Split(strings.TrimSpace(string(got)), "\n"), demoCount-6*60)
			}

			// Third run: nothing left to do, the file stays as it is.
			var stderr3 bytes.Buffer
			require.NoError(t, run(context.Background(), args, &bytes.Buffer{}, &stderr3, noEnv))
			assert.Contains(t, stderr3.String(), "already complete")
			again, err := os.ReadFile(out)
			require.NoError(t, err)
			assert.Equal(t, got, again)
		})
	}
}

// -max-pages exports a long history in slices that add up to the whole.
func TestExportInSlices(t *testing.T) {
	dir := t.TempDir()
	out, stateFile := filepath.Join(dir, "out.csv"), filepath.Join(dir, "s")
	args := []string{"-out", out, "-state", stateFile, "-max-pages", "2"}
	var logs []string
	for range 5 {
		var stderr bytes.Buffer
		require.NoError(t, run(context.Background(), args, &bytes.Buffer{}, &stderr, noEnv))
		logs = append(logs, stderr.String())
	}
	assert.Contains(t, logs[0], "stopped after 2 pages (-max-pages), 1999 values so far")
	assert.Contains(t, logs[1], "resuming after 1999 values (2 pages)")
	assert.Contains(t, logs[1], "stopped after 2 pages (-max-pages), 3997 values so far")
	// A short page is no proof of the end: the empty page after it is.
	assert.Contains(t, logs[2], "stopped after 2 pages (-max-pages), 5000 values so far")
	assert.Contains(t, logs[3], "export: done, 5000 values")
	assert.Contains(t, logs[4], "already complete: 5000 values")
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assertRows(t, got, time.Time{}, time.Time{})
}

func TestExportStateOfAnotherExportIsRefused(t *testing.T) {
	dir := t.TempDir()
	out, stateFile := filepath.Join(dir, "out.csv"), filepath.Join(dir, "s")
	require.NoError(t, run(context.Background(), []string{"-out", out, "-state", stateFile, "-from", "2024-05-04"}, &bytes.Buffer{}, &bytes.Buffer{}, noEnv))
	err := run(context.Background(), []string{"-out", out, "-state", stateFile, "-from", "2024-05-03"}, &bytes.Buffer{}, &bytes.Buffer{}, noEnv)
	require.ErrorContains(t, err, "belongs to another export")
}

func TestExportWithTokenUsesTheGivenPlatform(t *testing.T) {
	const token = "a-real-looking-thing-token-123456"
	srv := thethingstest.NewServer(t, thethingstest.WithThingTokens(token))
	defer srv.Close()
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		require.NoError(t, srv.Seed(token, "humidity", thethingstest.Record{Value: json.RawMessage(fmt.Sprint(40 + i)), Datetime: base.Add(time.Duration(i) * time.Hour)}))
	}
	env := map[string]string{"THETHINGS_TOKEN": token, "THETHINGS_BASE_URL": srv.URL()}
	var stdout, stderr bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"-key", "humidity"}, &stdout, &stderr, func(k string) string { return env[k] }))
	assert.Equal(t, "datetime,key,value,lat,long\n"+
		"2023-01-01T02:00:00.000Z,humidity,42,,\n"+
		"2023-01-01T01:00:00.000Z,humidity,41,,\n"+
		"2023-01-01T00:00:00.000Z,humidity,40,,\n", stdout.String())
	assert.Contains(t, stderr.String(), "thing a-re…")
	assert.NotContains(t, stderr.String()+stdout.String(), token)
	assert.NotContains(t, stderr.String(), "embedded")

	// A key never written is the platform's 404, reported plainly.
	err := run(context.Background(), []string{"-key", "pressure"}, &bytes.Buffer{}, &bytes.Buffer{}, func(k string) string { return env[k] })
	require.ErrorContains(t, err, "resource not found")
	assert.NotContains(t, err.Error(), token)
}

func TestExportBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-format", "xml"},
		{"-state", "s"},
		{"-from", "yesterday"},
		{"stray"},
		{"-max-pages", "2"},
		{"-max-pages", "-1", "-out", "x", "-state", "y"},
	} {
		err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}, noEnv)
		assert.Error(t, err, "%q", args)
	}
}
