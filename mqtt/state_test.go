package mqtt_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/mqtt"
)

type report struct {
	state thethings.State
	cause error
}

// The state handler says when the subscription is active: StateConnected
// once the broker acknowledged it, so a write made then reaches the loop;
// after the broker restarts, StateDisconnected with the cause,
// StateReconnecting, and StateConnected again once resubscribed.
func TestSubscribeStateHandler(t *testing.T) {
	srv, c, rest := setup(t)
	states := make(chan report, 64)
	onState := func(s thethings.State, cause error) { states <- report{s, cause} }
	receive := subscribe(t, c.Subscribe, mqtt.WithStateHandler(onState))
	ctx := testkit.Ctx(t, 0)
	next := func() report {
		t.Helper()
		select {
		case r := <-states:
			return r
		case <-ctx.Done():
			t.Fatal("no state reported")
			return report{}
		}
	}
	// No polling of the server: the handler's report is the signal.
	if r := next(); r.state != thethings.StateConnected || r.cause != nil {
		t.Fatalf("first report %v %v, want connected", r.state, r.cause)
	}
	if err := rest.Write(ctx, []thethings.Value{{Key: "k", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if m := receive(); m.Values[0].Key != "k" {
		t.Fatalf("message %v", m)
	}

	if err := srv.RestartMQTT(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for {
		r := next()
		seen = append(seen, r.state.String())
		if r.state == thethings.StateDisconnected && (r.cause == nil || strings.Contains(r.cause.Error(), token)) {
			t.Fatalf("disconnected with cause %v: want one, without the token", r.cause)
		}
		if r.state == thethings.StateConnected {
			break
		}
	}
	if s := strings.Join(seen, ","); !strings.HasPrefix(s, "disconnected,reconnecting,") {
		t.Fatalf("states after the restart %s: want disconnected, reconnecting, ..., connected", s)
	}
	if err := rest.Write(ctx, []thethings.Value{{Key: "after", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	if m := receive(); m.Values[0].Key != "after" {
		t.Fatalf("message %v", m)
	}
}

// A second loop on a connection already subscribed is told it is active
// too, without a second SUBSCRIBE.
func TestSubscribeStateHandlerSecondLoop(t *testing.T) {
	_, c, _ := setup(t)
	ctx, cancel := context.WithCancel(testkit.Ctx(t, 0))
	defer cancel()
	connected := make(chan int, 2)
	done := make(chan struct{}, 2)
	for i := range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			onState := func(s thethings.State, _ error) {
				if s == thethings.StateConnected {
					connected <- i
				}
			}
			for _, err := range c.Subscribe(ctx, mqtt.WithStateHandler(onState)) {
				if err != nil && !errors.Is(err, net.ErrClosed) {
					t.Errorf("loop %d: %v", i, err)
				}
			}
		}()
	}
	for range 2 {
		select {
		case <-connected:
		case <-ctx.Done():
			t.Fatal("a loop was never told it is subscribed")
		}
	}
	cancel()
	<-done
	<-done
}

// WithStateHandler refuses nil, and Subscribe a nil option.
func TestStateHandlerOption(t *testing.T) {
	_, c, _ := setup(t)
	for _, opt := range []mqtt.SubscribeOption{mqtt.WithStateHandler(nil), nil} {
		var errs []error
		for _, err := range c.Subscribe(testkit.Ctx(t, 0), opt) {
			errs = append(errs, err)
		}
		if len(errs) != 1 || !errors.Is(errs[0], thethings.ErrInvalidOption) {
			t.Fatalf("Subscribe yielded %v, want one ErrInvalidOption", errs)
		}
	}
}
