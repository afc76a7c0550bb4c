package mqtt_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/mqtt"
)

// syncBuffer is a bytes.Buffer for concurrent log writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTokenNeverShown(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, c, _ := setup(t, mqtt.WithLogger(logger), mqtt.WithWill(thethings.Value{Key: "w", Value: 1}))
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	keep(c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "bad key", Value: 1}}))
	short, cancel := context.WithCancel(context.Background())
	cancel()
	keep(c.Write(short, []thethings.Value{{Key: "k", Value: 1}}))
	if err := srv.RestartMQTT(); err != nil {
		t.Fatal(err)
	}
	// A write racing the restart may go out on the dead connection (its
	// outcome unknown) before the loss is seen and the reconnect logged: the
	// test waits for the reconnect its logs are to show.
	if !testkit.Eventually(t, "a reconnect", func() bool { return strings.Contains(logs.String(), "reconnected") }) {
		return
	}
	keep(c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "k", Value: 2}})) // after the reconnect: nil
	// A broker that is gone: dial errors, reconnect logs.
	dead, cancelDead := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelDead()
	_, err := mqtt.Dial(dead, token, mqtt.WithBroker("tcp://127.0.0.1:1"), mqtt.WithLogger(logger))
	keep(err)
	c.Close()
	keep(c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "k", Value: 3}}))
	for _, err := range c.Subscribe(testkit.Ctx(t, 0)) {
		keep(err)
	}
	if len(errs) < 4 {
		t.Fatalf("only %d errors collected: %v", len(errs), errs)
	}

	var shown []string
	for _, err := range errs {
		shown = append(shown, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
		if !strings.HasPrefix(err.Error(), "thethings: ") || strings.Count(err.Error(), "thethings:") != 1 {
			t.Errorf("error text %q: want one leading \"thethings: \"", err)
		}
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x"} {
		shown = append(shown, fmt.Sprintf(verb, c), fmt.Sprintf(verb, struct{ C *mqtt.Client }{c}))
	}
	logger.Info("client", "c", c)
	j, _ := json.Marshal(c)
	shown = append(shown, string(j), logs.String())
	for _, s := range shown {
		if strings.Contains(s, token) {
			t.Errorf("token shown in %q", s)
		}
	}
	if !strings.Contains(logs.String(), "reconnected") {
		t.Errorf("the logs saw no reconnect, so they prove little:\n%s", logs.String())
	}
	// paho's own loggers print topics: they stay off.
	for name, l := range map[string]paho.Logger{"ERROR": paho.ERROR, "CRITICAL": paho.CRITICAL, "WARN": paho.WARN, "DEBUG": paho.DEBUG} {
		if _, ok := l.(paho.NOOPLogger); !ok {
			t.Errorf("paho.%s is %T, want it off", name, l)
		}
	}
}

// A copy of a Client, as a struct holding one by value would make, prints
// no token either: not under any fmt verb, nor through log, slog or JSON.
func TestTokenNeverShownByAValue(t *testing.T) {
	_, c, _ := setup(t)
	type holder struct {
		Name   string
		Client any
	}
	// A copy of the Client as a value, made the way vet does not flag. It
	// is made of a closed Client: copying a live one, or printing what its
	// pointers reach, races with its goroutines, as vet's copylocks warns.
	c.Close()
	val := reflect.ValueOf(c).Elem().Interface()
	var shown []string
	for _, v := range []any{c, val, holder{"ptr", c}, holder{"val", val}, &holder{"val", val}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x"} {
			shown = append(shown, fmt.Sprintf(verb, v))
		}
		j, _ := json.Marshal(v)
		shown = append(shown, string(j))
	}
	var out syncBuffer
	slog.New(slog.NewTextHandler(&out, nil)).Info("c", "ptr", c, "val", val, "holder", holder{"val", val})
	slog.New(slog.NewJSONHandler(&out, nil)).Info("c", "ptr", c, "val", val, "holder", holder{"val", val})
	log.New(&out, "", 0).Printf("%v %+v", val, holder{"val", val})
	shown = append(shown, out.String())
	for _, s := range shown {
		if strings.Contains(s, token) || strings.Contains(s, hex.EncodeToString([]byte(token))) {
			t.Errorf("token shown in %q", s)
		}
	}
}
