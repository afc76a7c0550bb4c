package thethings_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/thethings-go/thethings"
)

// A board without a battery-backed clock boots in 1970. Its Writer does
// not stamp readings with that clock: it stamps them on the platform's,
// learned from the platform's answers. WithClock plays such a board.
func ExampleWithClock() {
	srv, _ := startExampleEmulator()
	defer srv.Close()
	boot := func() time.Time { return time.Unix(0, 0) } // never set since power-on
	c, err := thethings.NewClient(exampleToken, thethings.WithBaseURL(srv.URL()), thethings.WithClock(boot))
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
	stored := srv.Stored(exampleToken, "temperature")[0]
	fmt.Println("stored in 1970:", stored.Datetime.Year() == 1970)
	fmt.Println("within a minute of now:", time.Since(stored.Datetime).Abs() < time.Minute)
	// Output:
	// stored in 1970: false
	// within a minute of now: true
}
