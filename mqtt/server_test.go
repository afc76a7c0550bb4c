package mqtt_test

import (
	"testing"

	"github.com/thethings-go/thethings/internal/emulator"
)

// server is the test server with MQTT on, as the tests use it.
type server = emulator.Server

func newServer(tb testing.TB, tokens []string, codes ...string) *server {
	tb.Helper()
	opts := []emulator.Option{emulator.WithMQTT(), emulator.WithThingTokens(tokens...)}
	for _, c := range codes {
		opts = append(opts, emulator.WithActivationCodes(emulator.ActivationCode{Code: c}))
	}
	srv := emulator.New(opts...)
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	return srv
}
