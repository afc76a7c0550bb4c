package mqtt_test

import (
	"testing"

	"github.com/thethings-go/thethings/thethingstest"
)

// server is the test server with MQTT on, as the tests use it.
type server = thethingstest.Server

func newServer(tb testing.TB, tokens []string, codes ...string) *server {
	tb.Helper()
	opts := []thethingstest.Option{thethingstest.WithMQTT(), thethingstest.WithThingTokens(tokens...)}
	for _, c := range codes {
		opts = append(opts, thethingstest.WithActivationCodes(thethingstest.ActivationCode{Code: c}))
	}
	return thethingstest.NewServer(tb, opts...)
}
