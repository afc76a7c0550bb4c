package thethings_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// A long export that fails half-way resumes where it stopped, in this
// process or another, instead of starting over: the error of Values is a
// *ReadError whose Cursor follows the last value yielded. Here every second
// request is refused and retries are off, so the export resumes twice.
func ExampleReadError() {
	srv, err := thethingstest.New(
		thethingstest.WithThingTokens("my-thing-token"),
		thethingstest.WithFaults(thethingstest.Faults{Every503: 2}),
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	c, err := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()), thethings.WithRetry(thethings.NoRetries))
	if err != nil {
		log.Fatal(err)
	}
	// What the platform holds: six temperatures, one a minute from 10:00 UTC.
	base := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	history := make([]thethingstest.Record, 6)
	for i := range history {
		history[i] = thethingstest.Record{Value: json.RawMessage(fmt.Sprintf("%d.5", 20+i)), Datetime: base.Add(time.Duration(i) * time.Minute)}
	}
	if err := srv.Seed("my-thing-token", "temperature", history...); err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	opts := &thethings.ReadOptions{Start: base, Limit: 3}
	for attempt := 0; attempt < 3; attempt++ {
		var failed error
		for v, err := range c.Values(ctx, "temperature", opts) {
			if err != nil {
				failed = err
				break
			}
			fmt.Println(v.Datetime.Format(time.Kitchen), v.Value)
		}
		var re *thethings.ReadError
		if !errors.As(failed, &re) {
			return // done, or a failure before the first page
		}
		fmt.Println("resuming after:", re.Err)
		opts = &thethings.ReadOptions{Cursor: re.Cursor} // nothing twice
	}
	// Output:
	// 10:05AM 25.5
	// 10:04AM 24.5
	// 10:03AM 23.5
	// resuming after: thethings: GET /v2/things/***/resources/temperature: 503 Service Unavailable: Service Unavailable (retry after 1s)
	// 10:02AM 22.5
	// 10:01AM 21.5
	// 10:00AM 20.5
	// resuming after: thethings: GET /v2/things/***/resources/temperature: 503 Service Unavailable: Service Unavailable (retry after 1s)
}

// A subscription yields two errors that do not end it: a frame over the
// size limit (skipped without being buffered) and an item that cannot be
// decoded (the frame's other items are delivered). Go on past them; here a
// 2 KiB value is over a 1 KiB limit.
func ExampleWithMaxFrameSize() {
	srv, err := thethingstest.New(thethingstest.WithThingTokens("my-thing-token"))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	c, err := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	onState := func(s thethings.State, _ error) {
		if s == thethings.StateConnected {
			big := []thethings.Value{{Key: "photo", Value: strings.Repeat("A", 2048)}}
			if err := c.Write(ctx, big); err != nil {
				log.Fatal(err)
			}
			if err := c.Write(ctx, []thethings.Value{{Key: "door", Value: "open"}}); err != nil {
				log.Fatal(err)
			}
		}
	}
	for msg, err := range c.Subscribe(ctx, thethings.WithMaxFrameSize(1<<10), thethings.WithStateHandler(onState)) {
		if errors.Is(err, thethings.ErrFrameTooLarge) || errors.Is(err, thethings.ErrInvalidValue) {
			fmt.Println(err) // lost, but the stream goes on
			continue
		}
		if err != nil {
			log.Fatal(err) // the subscription ended for good
		}
		for _, v := range msg.Values {
			fmt.Println(v.Key, v.Value)
		}
		break
	}
	// Output:
	// thethings: GET /v2/things/***: frame of more than 1024 bytes skipped: subscription frame too large
	// door open
}
