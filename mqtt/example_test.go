package mqtt_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/mqtt"
	"github.com/thethings-go/thethings/thethingstest"
)

// A device writes over MQTT; the values are readable over REST. Against
// the platform, leave WithBroker out (DefaultBroker, TLS).
func ExampleDial() {
	srv, _ := thethingstest.New(thethingstest.WithMQTT(), thethingstest.WithThingTokens("my-thing-token"))
	_ = srv.Start()
	defer srv.Close()
	ctx := context.Background()

	dev, err := mqtt.Dial(ctx, "my-thing-token",
		mqtt.WithBroker(srv.MQTTURL()),
		mqtt.WithWill(thethings.Value{Key: "status", Value: "offline"}))
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	if err := dev.Write(ctx, []thethings.Value{{Key: "temperature", Value: 21.5, Datetime: at}}); err != nil {
		log.Fatal(err)
	}

	rest, _ := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()))
	page, err := rest.Read(ctx, "temperature", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(page.Values[0].Value, page.Values[0].Datetime)
	fmt.Println(strings.Replace(fmt.Sprint(dev), srv.MQTTURL(), "tcp://…", 1)) // the token never shows
	// Output:
	// 21.5 2026-05-01 12:00:00 +0000 UTC
	// mqtt.Client{broker: tcp://…, thing: ***}
}

// Activate turns an activation code into a thing; persist its token.
func ExampleActivate() {
	srv, _ := thethingstest.New(thethingstest.WithMQTT(), thethingstest.WithThingTokens(),
		thethingstest.WithActivationCodes(thethingstest.ActivationCode{Code: "A1B2-C3D4"}))
	_ = srv.Start()
	defer srv.Close()
	ctx := context.Background()

	dev, err := mqtt.Activate(ctx, "A1B2-C3D4", mqtt.WithBroker(srv.MQTTURL()))
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	fmt.Println(dev.ThingToken() == srv.Tokens()[0])

	_, err = mqtt.Activate(ctx, "A1B2-C3D4", mqtt.WithBroker(srv.MQTTURL()))
	fmt.Println(errors.Is(err, thethings.ErrActivationCodeNotFound))
	// Output:
	// true
	// true
}

// Subscribe delivers every write to the thing, here a backend's REST
// write, as one Message. The backend writes once the state handler says the
// subscription is active.
func ExampleClient_Subscribe() {
	srv, err := thethingstest.New(thethingstest.WithMQTT(), thethingstest.WithThingTokens("my-thing-token"))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	dev, err := mqtt.Dial(ctx, "my-thing-token", mqtt.WithBroker(srv.MQTTURL()))
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	backend, err := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()))
	if err != nil {
		log.Fatal(err)
	}
	listening := mqtt.WithStateHandler(func(s thethings.State, _ error) {
		if s == thethings.StateConnected {
			go func() { _ = backend.Write(ctx, []thethings.Value{{Key: "led", Value: "on"}}) }()
		}
	})
	for msg, err := range dev.Subscribe(ctx, listening) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(msg.Values[0].Key, msg.Values[0].Value)
		break
	}
	// Output: led on
}

// WithStateHandler says when the subscription is active: from
// StateConnected on, the thing's writes reach the loop. Here the backend
// writes only then, with no polling.
func ExampleWithStateHandler() {
	srv, _ := thethingstest.New(thethingstest.WithMQTT(), thethingstest.WithThingTokens("my-thing-token"))
	_ = srv.Start()
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	dev, err := mqtt.Dial(ctx, "my-thing-token", mqtt.WithBroker(srv.MQTTURL()))
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	backend, _ := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()))
	onState := func(s thethings.State, cause error) {
		fmt.Println("subscription", s)
		if s == thethings.StateConnected {
			go func() { _ = backend.Write(ctx, []thethings.Value{{Key: "led", Value: "on"}}) }()
		}
	}
	for msg, err := range dev.Subscribe(ctx, mqtt.WithStateHandler(onState)) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(msg.Values[0].Key, msg.Values[0].Value)
		break
	}
	// Output:
	// subscription connected
	// led on
}

// WithQueueBytes bounds what waits for a slow loop; what does not fit is
// dropped and reported in its place as a *DroppedError, and the loop goes
// on.
func ExampleWithQueueBytes() {
	srv, _ := thethingstest.New(thethingstest.WithMQTT(), thethingstest.WithThingTokens("my-thing-token"))
	_ = srv.Start()
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	dev, err := mqtt.Dial(ctx, "my-thing-token", mqtt.WithBroker(srv.MQTTURL()))
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	backend, _ := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()))
	write := func(s thethings.State, _ error) {
		if s == thethings.StateConnected {
			go func() { _ = backend.Write(ctx, []thethings.Value{{Key: "cmd", Value: "reboot"}}) }()
		}
	}
	for msg, err := range dev.Subscribe(ctx, mqtt.WithQueueBytes(256<<10), mqtt.WithStateHandler(write)) {
		var dropped *mqtt.DroppedError
		switch {
		case errors.As(err, &dropped):
			log.Printf("missed %d commands; reading the rest over REST", dropped.Messages)
			continue
		case err != nil:
			log.Fatal(err)
		}
		fmt.Println(msg.Values[0].Key, msg.Values[0].Value)
		break
	}
	// Output: cmd reboot
}

// WithMaxPacketSize bounds what the broker may send; a larger packet is
// refused before it is read and reported to the loop, which goes on.
func ExampleWithMaxPacketSize() {
	srv, _ := thethingstest.New(thethingstest.WithMQTT(), thethingstest.WithThingTokens("my-thing-token"))
	_ = srv.Start()
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	dev, err := mqtt.Dial(ctx, "my-thing-token", mqtt.WithBroker(srv.MQTTURL()), mqtt.WithMaxPacketSize(4<<10))
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	backend, _ := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()))
	write := func(s thethings.State, _ error) {
		if s == thethings.StateConnected {
			go func() {
				_ = backend.Write(ctx, []thethings.Value{{Key: "blob", Value: strings.Repeat("x", 8<<10)}})
			}()
		}
	}
	for _, err := range dev.Subscribe(ctx, mqtt.WithStateHandler(write)) {
		fmt.Println(errors.Is(err, mqtt.ErrPacketTooLarge))
		break
	}
	// Output: true
}

// WithWriteTimeout bounds a Write whose ctx has no deadline. When the
// broker does not acknowledge in time, the values may or may not have
// been taken: the error says which values, with Unknown set.
func ExampleWithWriteTimeout() {
	srv, _ := thethingstest.New(thethingstest.WithMQTT(), thethingstest.WithThingTokens("my-thing-token"))
	_ = srv.Start()
	defer srv.Close()

	dev, err := mqtt.Dial(context.Background(), "my-thing-token",
		mqtt.WithBroker(srv.MQTTURL()), mqtt.WithWriteTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	err = dev.Write(context.Background(), []thethings.Value{{Key: "temperature", Value: 21.5}})
	var we *thethings.WriteError
	switch {
	case errors.As(err, &we) && we.Unknown:
		log.Printf("%d values may not be stored; read them back before writing them again", len(we.Values))
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println(srv.StoredCount("my-thing-token", "temperature"))
	// Output: 1
}
