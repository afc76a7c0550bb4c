package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/thethings-go/thethings"
)

// A long export that fails half-way resumes where it stopped, in this
// process or another, instead of starting over: the error of Values is a
// *ReadError whose Cursor follows the last value yielded.
func ExampleReadError() {
	c, err := thethings.NewClient("THING_TOKEN")
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	opts := &thethings.ReadOptions{Start: time.Now().AddDate(0, -1, 0)}
	for attempt := 0; attempt < 3; attempt++ {
		var failed error
		for v, err := range c.Values(ctx, "temperature", opts) {
			if err != nil {
				failed = err
				break
			}
			fmt.Println(v.Datetime, v.Value)
		}
		var re *thethings.ReadError
		if !errors.As(failed, &re) {
			return // done, or a failure before the first page
		}
		opts = &thethings.ReadOptions{Cursor: re.Cursor} // nothing twice
	}
}

// A subscription yields two errors that do not end it: a frame over the
// size limit (skipped without being buffered) and an item that cannot be
// decoded (the frame's other items are delivered). Go on past them.
func ExampleWithMaxFrameSize() {
	c, err := thethings.NewClient("THING_TOKEN")
	if err != nil {
		log.Fatal(err)
	}
	for msg, err := range c.Subscribe(context.Background(), thethings.WithMaxFrameSize(1<<20)) {
		if errors.Is(err, thethings.ErrFrameTooLarge) || errors.Is(err, thethings.ErrInvalidValue) {
			log.Print(err) // lost, but the stream goes on
			continue
		}
		if err != nil {
			log.Fatal(err) // the subscription ended for good
		}
		for _, v := range msg.Values {
			fmt.Println(v.Key, v.Value)
		}
	}
}
