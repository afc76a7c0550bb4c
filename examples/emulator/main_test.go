package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs the command with args and returns its printed lines as they
// come, plus a stop function that returns run's error.
func start(t *testing.T, args ...string) (lines <-chan string, stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, pw)
		pw.Close()
		done <- err
	}()
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch, func() error {
		cancel()
		err := <-done
		for range ch { // drain
		}
		return err
	}
}

func nextLine(t *testing.T, lines <-chan string, prefix string) string {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "output ended before %q", prefix)
			if rest, found := strings.CutPrefix(strings.TrimSpace(l), prefix); found {
				return strings.TrimSpace(rest)
			}
		case <-timeout:
			t.Fatalf("no line starting with %q", prefix)
		}
	}
}

func TestRunPrintsAWorkingURL(t *testing.T) {
	lines, stop := start(t, "-addr", "127.0.0.1:0", "-tokens", "tok-a,tok-b", "-codes", "c1,c2:prod", "-legacy-write-response")
	url := nextLine(t, lines, "thethings.iO emulator listening on")
	assert.Equal(t, "tok-a", nextLine(t, lines, "thing token:"))
	assert.Equal(t, "tok-b", nextLine(t, lines, "thing token:"))
	assert.Equal(t, "c1", nextLine(t, lines, "activation code:"))
	assert.Equal(t, "c2 (product prod)", nextLine(t, lines, "activation code:"))
	require.True(t, strings.HasPrefix(url, "http://127.0.0.1:") && strings.HasSuffix(url, "/v2/"), url)

	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	require.NoError(t, err)
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Equal(t, "Invalid session token", body["message"])

	resp, err = client.Post(url+"things/tok-b", "application/json", strings.NewReader(`{"values":[{"key":"fun","value":"9000"}]}`))
	require.NoError(t, err)
	body = nil
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, map[string]any{"status": "Success", "message": "Created"}, body, "-legacy-write-response")

	resp, err = client.Post(url+"things/", "application/json", strings.NewReader(`{"activationCode":"c2","productId":"other"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "c2 is bound to prod")

	client.CloseIdleConnections()
	require.NoError(t, stop())
}

func TestRunMakesUpCredentials(t *testing.T) {
	lines, stop := start(t, "-addr", "127.0.0.1:0", "-every503", "1")
	url := nextLine(t, lines, "thethings.iO emulator listening on")
	tok := nextLine(t, lines, "thing token:")
	assert.Len(t, tok, 43)
	assert.NotEmpty(t, nextLine(t, lines, "activation code:"))
	assert.NotEmpty(t, nextLine(t, lines, "activation code:"))
	assert.Contains(t, nextLine(t, lines, "curl"), url)

	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	resp, err := client.Get(url + "things/" + tok + "/resources/x")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "fault flags reach the server")
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	client.CloseIdleConnections()
	require.NoError(t, stop())
}

func TestRunRejectsBadFlags(t *testing.T) {
	err := run(context.Background(), []string{"-nope"}, io.Discard)
	assert.Error(t, err)
	err = run(context.Background(), []string{"-addr", "256.0.0.1:99999"}, io.Discard)
	assert.Error(t, err)
}
