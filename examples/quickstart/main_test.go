package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The README's first command: no configuration, the embedded emulator.
func TestQuickstartEmbedded(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), nil, &out, &errOut, func(string) string { return "" }))
	s := out.String()
	t.Log("\n" + s)
	for _, line := range []string{
		"No THETHINGS_TOKEN: running against an embedded emulator of the platform at http://127.0.0.1:",
		"1. Activated a thing with code QUIC…: thing token ",
		"2. Platform time: ",
		"3. Wrote 3 temperature readings with positions and their own timestamps in one request",
		"4. Read back, newest first:",
		"  23     at 41.3885,2.1712",
		"  22.25  at 41.3879,2.1699",
		"  21.5   at 41.3874,2.1686",
		"5. Wrote 1500 counter values",
		"Values walked them newest first: 1500 of 1500 values, 0 missed, 0 repeated",
		"(3 requests: the platform answers at most 1000 values per request)",
		"6. $geo set and read back: lat 41.390205, long 2.154007",
		"then its interval to 30: map[interval:30 name:quickstart]; $settings.quickstart.interval = 30",
		"8. Subscribed to the thing's realtime channel; writing door = open ...",
		"received live: door = open, ",
		"Done.",
	} {
		assert.Contains(t, s, line)
	}
	assert.NotContains(t, s, demoCode)
	assert.Empty(t, errOut.String())
}

// With THETHINGS_TOKEN the same flow runs against the given platform (an
// emulator here) without activation, under "quickstart." keys.
func TestQuickstartWithToken(t *testing.T) {
	const token = "a-real-looking-thing-token-123456"
	srv := thethingstest.NewServer(t, thethingstest.WithThingTokens(token))
	defer srv.Close()
	// Another program's setting on the same thing (the device example's).
	other, err := thethings.NewClient(token, thethings.WithBaseURL(srv.URL()))
	require.NoError(t, err)
	require.NoError(t, other.SetSetting(context.Background(), "interval", 25))
	env := map[string]string{"THETHINGS_TOKEN": token, "THETHINGS_BASE_URL": srv.URL()}
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), nil, &out, &bytes.Buffer{}, func(k string) string { return env[k] }))
	s := out.String()
	assert.Contains(t, s, "1. Thing token a-re… from THETHINGS_TOKEN: activation skipped")
	assert.Contains(t, s, "Wrote 1500 quickstart.counter values")
	assert.Contains(t, s, "1500 of 1500 values, 0 missed, 0 repeated")
	assert.Contains(t, s, "received live: quickstart.door = open")
	assert.NotContains(t, s, "embedded")
	assert.NotContains(t, s, token)
	assert.Equal(t, 3, srv.StoredCount(token, "quickstart.temperature"))
	assert.Equal(t, 1500, srv.StoredCount(token, "quickstart.counter"))
	assert.Zero(t, srv.Duplicates())
	assert.Equal(t, []string{token}, srv.Tokens(), "no activation")
	assert.Equal(t, map[string]any{
		"interval":   25.0, // left alone
		"quickstart": map[string]any{"interval": 30.0, "name": "quickstart"},
	}, srv.Settings(token))
}

// With THETHINGS_ACTIVATION_CODE a new thing is activated on the given
// platform; neither the code nor the new token is printed in full.
func TestQuickstartWithActivationCode(t *testing.T) {
	const code = "MY-ACTIVATION-CODE-42"
	srv := thethingstest.NewServer(t, thethingstest.WithThingTokens(), thethingstest.WithActivationCodes(thethingstest.ActivationCode{Code: code, ProductID: "p1"}))
	defer srv.Close()
	env := map[string]string{"THETHINGS_ACTIVATION_CODE": code, "THETHINGS_PRODUCT_ID": "p1", "THETHINGS_BASE_URL": srv.URL()}
	getenv := func(k string) string { return env[k] }
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), nil, &out, &bytes.Buffer{}, getenv))
	s := out.String()
	assert.Contains(t, s, "1. Activated a thing with code MY-A…")
	require.Len(t, srv.Tokens(), 1)
	tok := srv.Tokens()[0]
	assert.NotContains(t, s, tok)
	assert.NotContains(t, s, code)
	assert.Equal(t, 1500, srv.StoredCount(tok, "quickstart.counter"))

	// The code is spent: a second run fails plainly.
	err := run(context.Background(), nil, &bytes.Buffer{}, &bytes.Buffer{}, getenv)
	require.ErrorIs(t, err, thethings.ErrActivationCodeNotFound)
}

func TestQuickstartRefusesArguments(t *testing.T) {
	var errOut bytes.Buffer
	require.Error(t, run(context.Background(), []string{"-v"}, &bytes.Buffer{}, &errOut, func(string) string { return "" }))
	assert.Contains(t, errOut.String(), "usage: quickstart")
}
