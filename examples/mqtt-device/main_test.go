package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/thethings-go/thethings/thethingstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Without a token: the embedded server, activation over MQTT, a backend
// command, every reading read back.
func TestEmbedded(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"-readings", "4", "-interval", "20ms"}, &out, func(string) string { return "" })
	require.NoError(t, err, out.String())
	s := out.String()
	t.Log("\n" + s)
	assert.Contains(t, s, "activated DEMO-CODE-1")
	assert.Contains(t, s, "reading 4: 20.75 acknowledged by the broker")
	assert.Contains(t, s, "received led=on")
	assert.Contains(t, s, "received temperature=20.5")
	assert.Contains(t, s, "readings written 4, read back over REST 4")
}

// With THETHINGS_TOKEN it dials the broker it is given and never prints
// the token.
func TestWithToken(t *testing.T) {
	const token = "a-real-looking-thing-token-123456"
	srv := thethingstest.NewServer(t, thethingstest.WithMQTT(), thethingstest.WithThingTokens(token))
	env := map[string]string{"THETHINGS_TOKEN": token, "THETHINGS_MQTT_BROKER": srv.MQTTURL(), "THETHINGS_BASE_URL": srv.URL()}
	var out bytes.Buffer
	err := run(context.Background(), []string{"-readings", "3", "-interval", "10ms"}, &out, func(k string) string { return env[k] })
	require.NoError(t, err, out.String())
	s := out.String()
	assert.Contains(t, s, "connected to the broker")
	assert.Contains(t, s, "readings written 3, read back over REST 3")
	assert.False(t, strings.Contains(s, token))
	assert.Equal(t, 3, srv.StoredCount(token, "temperature"))
	stored := srv.Stored(token, "status")
	require.Len(t, stored, 2, "online, then offline; a clean close sends no will")
	assert.JSONEq(t, `"offline"`, string(stored[0].Value))
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-readings", "0"}, {"-interval", "0"}, {"-nope"}} {
		assert.Error(t, run(context.Background(), args, &bytes.Buffer{}, func(string) string { return "" }), "%q", args)
	}
}
