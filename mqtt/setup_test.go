// The tests' setup, in one place, as go-github's setup: a test server with
// MQTT and a client of each kind for one of its things (setup), and a
// Subscribe loop that the test reads at its own pace (subscribe).
package mqtt_test

import (
	"context"
	"errors"
	"iter"
	"net"
	"testing"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/mqtt"
	"github.com/thethings-go/thethings/thethingstest"
)

const token = "tok-SENTINEL-7f3a9c"

// server is the test server with MQTT on, as the tests use it.
type server = thethingstest.Server

// setup starts a test server with MQTT that knows the thing token, and
// returns it with a client dialled to its broker as token with opts, and a
// REST client of the same thing. All of them end with the test or
// benchmark.
func setup(tb testing.TB, opts ...mqtt.Option) (*server, *mqtt.Client, *thethings.Client) {
	tb.Helper()
	srv := thethingstest.NewServer(tb, thethingstest.WithMQTT(), thethingstest.WithThingTokens(token))
	c, err := mqtt.Dial(testkit.Ctx(tb, 0), token, append([]mqtt.Option{mqtt.WithBroker(srv.MQTTURL())}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	rest, err := thethings.NewClient(token, thethings.WithBaseURL(srv.URL()))
	if err != nil {
		tb.Fatal(err)
	}
	return srv, c, rest
}

// subscribe ranges over sub(ctx, opts...), an MQTT or a REST Subscribe,
// in a goroutine until the test ends, and returns a function that waits
// for its next message. An error of the loop fails the test, except
// net.ErrClosed: the test closed the client.
func subscribe[O any](t *testing.T, sub func(context.Context, ...O) iter.Seq2[thethings.Message, error], opts ...O) (receive func() thethings.Message) {
	t.Helper()
	ctx := t.Context() // ends before the cleanups run
	out := make(chan thethings.Message, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range sub(ctx, opts...) {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				t.Errorf("subscribe: %v", err)
				continue
			}
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { <-done })
	return func() thethings.Message {
		t.Helper()
		select {
		case m := <-out:
			return m
		case <-time.After(testkit.Patience):
			t.Fatal("no message")
			return thethings.Message{}
		}
	}
}
