// Command mqtt-device is a device on the platform's MQTT API: one
// long-lived connection for its writes and its commands, a Last Will that
// marks it offline when the link dies, and a read-back over REST of what
// it wrote.
//
//	go run ./examples/mqtt-device -readings 5 -interval 1s
//
// It connects, announces status "online", subscribes to its thing's topic
// (where every write to the thing arrives, the device's own and those of a
// backend) and sends -readings temperature readings stamped with the
// device's clock, each acknowledged by the broker (QoS 1). The broker's
// acknowledgement is not a read-back, so at the end it reads the readings
// back over the REST API and counts them. Then it announces "offline" and
// closes the connection (a clean close sends no Last Will).
//
// With THETHINGS_TOKEN it talks to the real broker (THETHINGS_MQTT_BROKER
// overrides it, THETHINGS_BASE_URL the REST API). Without it, it starts an
// embedded test server with MQTT, activates a thing over MQTT with an
// activation code, and plays a backend that switches the device's LED on
// over REST.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/mqtt"
	"github.com/thethings-go/thethings/thethingstest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "mqtt-device:", err)
		os.Exit(1)
	}
}

const demoCode = "DEMO-CODE-1"

// run is main without the process: the tests call it.
func run(ctx context.Context, args []string, out io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("mqtt-device", flag.ContinueOnError)
	fs.SetOutput(out)
	readings := fs.Int("readings", 5, "temperature readings to send")
	interval := fs.Duration("interval", time.Second, "time between readings")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *readings < 1 || *interval <= 0 {
		return errors.New("-readings and -interval must be positive")
	}

	will := mqtt.WithWill(thethings.Value{Key: "status", Value: "offline"})
	token := getenv("THETHINGS_TOKEN")
	var (
		dev     *mqtt.Client
		restOpt []thethings.Option
		srv     *thethingstest.Server
		err     error
	)
	if token == "" {
		srv, err = thethingstest.New(thethingstest.WithMQTT(), thethingstest.WithThingTokens(),
			thethingstest.WithActivationCodes(thethingstest.ActivationCode{Code: demoCode}))
		if err != nil {
			return err
		}
		if err := srv.Start(); err != nil {
			return err
		}
		defer srv.Close()
		fmt.Fprintln(out, "embedded test server, MQTT at", srv.MQTTURL())
		// A device without a token activates itself; persist the token.
		dev, err = mqtt.Activate(ctx, demoCode, mqtt.WithBroker(srv.MQTTURL()), will)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "activated", demoCode)
		restOpt = append(restOpt, thethings.WithBaseURL(srv.URL()))
	} else {
		opts := []mqtt.Option{will}
		if b := getenv("THETHINGS_MQTT_BROKER"); b != "" {
			opts = append(opts, mqtt.WithBroker(b))
		}
		if u := getenv("THETHINGS_BASE_URL"); u != "" {
			restOpt = append(restOpt, thethings.WithBaseURL(u))
		}
		if dev, err = mqtt.Dial(ctx, token, opts...); err != nil {
			return err
		}
		fmt.Fprintln(out, "connected to the broker")
	}
	defer dev.Close()
	rest, err := thethings.NewClient(dev.ThingToken(), restOpt...)
	if err != nil {
		return err
	}

	// Commands and writes to the thing arrive on its topic.
	subCtx, stopSub := context.WithCancel(ctx)
	received := make(chan thethings.Value, 64)
	subDone := make(chan struct{})
	listening := make(chan struct{}) // closed once the broker acknowledged the subscription
	var once sync.Once
	onState := mqtt.WithStateHandler(func(s thethings.State, _ error) {
		if s == thethings.StateConnected {
			once.Do(func() { close(listening) })
		}
	})
	go func() {
		defer close(subDone)
		for msg, err := range dev.Subscribe(subCtx, onState) {
			if err != nil {
				fmt.Fprintln(out, "subscription:", err)
				continue
			}
			for _, v := range msg.Values {
				received <- v
			}
		}
	}()
	defer func() { stopSub(); <-subDone }()
	if srv != nil {
		select { // the demo's backend writes to the thing once it listens
		case <-listening:
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	if err := dev.Write(ctx, []thethings.Value{{Key: "status", Value: "online"}}); err != nil {
		return err
	}
	start := time.Now().UTC().Truncate(time.Millisecond)
	sent := 0
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for i := range *readings {
		v := thethings.Value{Key: "temperature", Value: 20 + float64(i)/4, Datetime: time.Now().UTC().Truncate(time.Millisecond)}
		if err := dev.Write(ctx, []thethings.Value{v}); err != nil {
			return fmt.Errorf("reading %d: %w", i+1, err)
		}
		sent++
		fmt.Fprintf(out, "reading %d: %.2f acknowledged by the broker\n", i+1, v.Value)
		if srv != nil && i == 0 {
			// A backend switches the LED on over REST; the device hears it.
			if err := rest.Write(ctx, []thethings.Value{{Key: "led", Value: "on"}}); err != nil {
				return err
			}
		}
		drain(received, out)
		if i < *readings-1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
	}
	drainFor(received, out, 200*time.Millisecond)

	// QoS 1 says the broker took each message; only a read-back says the
	// platform stored them.
	stored := 0
	for _, err := range rest.Values(ctx, "temperature", &thethings.ReadOptions{Start: start}) {
		if err != nil {
			return fmt.Errorf("read back: %w", err)
		}
		stored++
	}
	fmt.Fprintf(out, "readings written %d, read back over REST %d\n", sent, stored)
	if err := dev.Write(ctx, []thethings.Value{{Key: "status", Value: "offline"}}); err != nil {
		return err
	}
	return nil
}

// drain prints what the subscription delivered so far.
func drain(received <-chan thethings.Value, out io.Writer) {
	for {
		select {
		case v := <-received:
			fmt.Fprintln(out, printable(fmt.Sprintf("received %s=%v", v.Key, v.Value)))
		default:
			return
		}
	}
}

// drainFor prints what arrives within d.
func drainFor(received <-chan thethings.Value, out io.Writer, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case v := <-received:
			fmt.Fprintln(out, printable(fmt.Sprintf("received %s=%v", v.Key, v.Value)))
		case <-t.C:
			return
		}
	}
}

// printable escapes what a device or the platform sent that a terminal
// would act on: control characters but newline and tab (ESC starts the
// sequences that retitle, clear or paste), C1 controls, bidi overrides
// and bytes that are not UTF-8.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r == utf8.RuneError, unicode.IsControl(r), r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
