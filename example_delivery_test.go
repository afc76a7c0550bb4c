package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// A board without a battery-backed clock boots in 1970. Its Writer does
// not stamp readings with that clock: it stamps them on the platform's,
// learned from the platform's answers. WithClock plays such a board.
func ExampleWithClock() {
	srv, err := thethingstest.New(thethingstest.WithThingTokens("my-thing-token"))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	boot := func() time.Time { return time.Unix(0, 0) } // never set since power-on
	c, err := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()), thethings.WithClock(boot))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	w, err := c.NewWriter()
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Add(ctx, thethings.Value{Key: "temperature", Value: 21.5}); err != nil {
		log.Fatal(err)
	}
	if err := w.Close(ctx); err != nil {
		log.Fatal(err)
	}
	stored := srv.Stored("my-thing-token", "temperature")[0]
	fmt.Println("stored in 1970:", stored.Datetime.Year() == 1970)
	fmt.Println("within a minute of now:", time.Since(stored.Datetime).Abs() < time.Minute)
	// Output:
	// stored in 1970: false
	// within a minute of now: true
}

// When the platform refuses the thing rather than the values (here the
// thing is not known yet, as after a platform restart that forgot it), a
// Writer pauses: it keeps the values, tells the error handler once, and
// delivers them all when the refusal ends.
func ExampleWriter_pause() {
	srv, err := thethingstest.New(thethingstest.WithThingTokens("my-thing-token"))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	const token = "thing-known-later"
	c, err := thethings.NewClient(token, thethings.WithBaseURL(srv.URL()),
		thethings.WithRetry(thethings.RetryPolicy{MaxWait: 50 * time.Millisecond}))
	if err != nil {
		log.Fatal(err)
	}
	paused := make(chan error, 1)
	w, err := c.NewWriter(thethings.WithErrorHandler(func(we *thethings.WriteError) {
		if len(we.Values) == 0 { // a pause: the values are kept
			paused <- we
		}
	}))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		if err := w.Add(ctx, thethings.Value{Key: "counter", Value: i}); err != nil {
			log.Fatal(err)
		}
	}
	go func() { _ = w.Flush(ctx) }()
	err = <-paused
	fmt.Println("paused, thing not found:", errors.Is(err, thethings.ErrThingNotFound))
	fmt.Println("online:", w.Stats().Online, "pending:", w.Stats().Pending)

	srv.AddThing(token) // the refusal ends
	if err := w.Close(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored:", srv.StoredCount(token, "counter"))
	// Output:
	// paused, thing not found: true
	// online: false pending: 3
	// stored: 3
}
