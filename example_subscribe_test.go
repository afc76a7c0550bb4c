package thethings_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// A device waits for commands on its realtime channel. Here the command is
// written by another goroutine once the subscription is connected; the
// loop receives it and stops listening with break, which closes the
// connection.
func ExampleClient_Subscribe() {
	srv, err := thethingstest.New(thethingstest.WithThingTokens("my-thing-token"))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	// Against the platform: thethings.NewClient(os.Getenv("THING_TOKEN")).
	c, err := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	onState := func(s thethings.State, cause error) {
		if s == thethings.StateConnected {
			go func() {
				if err := c.Write(ctx, []thethings.Value{{Key: "valve", Value: "open"}, {Key: "minutes", Value: 15}}); err != nil {
					log.Print(err)
				}
			}()
		}
	}
	for msg, err := range c.Subscribe(ctx,
		thethings.WithKeepAlive(20*time.Second),
		thethings.WithBackfill("valve"), // after a reconnect, commands sent meanwhile come first
		thethings.WithStateHandler(onState)) {
		if err != nil {
			log.Fatal(err) // the subscription ended for good
		}
		for _, v := range msg.Values {
			fmt.Printf("%s = %v\n", v.Key, v.Value)
		}
		break
	}
	// Output:
	// valve = open
	// minutes = 15
}
