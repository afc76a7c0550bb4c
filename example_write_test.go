package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// Readings taken offline, with their own timestamps and positions, are
// written in one request. They need not be sorted.
func ExampleClient_Write() {
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
	ctx := context.Background()

	barcelona := &thethings.Geo{Lat: 41.4121132, Long: 2.2199454}
	err = c.Write(ctx, []thethings.Value{
		{Key: "temperature", Value: 21.5, Geo: barcelona, Datetime: time.Date(2015, 5, 20, 13, 0, 0, 0, time.UTC)},
		{Key: "temperature", Value: 19.25, Geo: barcelona, Datetime: time.Date(2015, 5, 20, 12, 0, 0, 0, time.UTC)},
		{Key: "door", Value: "open"}, // no Datetime: the platform's clock
		{Key: "reading", Value: map[string]any{"ok": true, "samples": []int{3, 4}}},
	})
	if err != nil {
		log.Fatal(err)
	}

	// What the platform stored, newest first.
	for _, r := range srv.Stored("my-thing-token", "temperature") {
		fmt.Println(r.Datetime.Format(time.RFC3339), string(r.Value), r.Geo.Lat, r.Geo.Long)
	}
	fmt.Println(string(srv.Stored("my-thing-token", "reading")[0].Value))
	// Output:
	// 2015-05-20T13:00:00Z 21.5 41.4121132 2.2199454
	// 2015-05-20T12:00:00Z 19.25 41.4121132 2.2199454
	// {"ok":true,"samples":[3,4]}
}

// A Writer batches values from many goroutines in the background. Close
// sends what is left and reports every value that could not be written.
func ExampleWriter() {
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
	ctx := context.Background()

	w, err := c.NewWriter(
		thethings.WithBatchSize(100),
		thethings.WithFlushInterval(time.Second),
		thethings.WithErrorHandler(func(we *thethings.WriteError) {
			log.Printf("%d values refused: %v", len(we.Values), we.Err)
		}),
	)
	if err != nil {
		log.Fatal(err) // an invalid option
	}
	for i := range 250 {
		if err := w.Add(ctx, thethings.Value{Key: "counter", Value: i}); err != nil {
			log.Fatal(err) // a bad value, a full buffer past ctx, or a closed writer
		}
	}
	if err := w.Close(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored:", srv.StoredCount("my-thing-token", "counter"))
	fmt.Println("requests:", srv.Requests(thethingstest.RouteWrite))
	// Output:
	// stored: 250
	// requests: 3
}

// Every failed write is a *WriteError that lists the values not written.
// Unknown says whether the platform may have stored them anyway.
func ExampleWriteError() {
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
	ctx := context.Background()

	// Refused before any request: the second key has a space.
	err = c.Write(ctx, []thethings.Value{
		{Key: "temperature", Value: 21.5},
		{Key: "bad key", Value: 1},
	})
	var we *thethings.WriteError
	if errors.As(err, &we) {
		fmt.Println(len(we.Values), "values not written, unknown:", we.Unknown)
		fmt.Println("invalid key:", errors.Is(err, thethings.ErrInvalidKey))
		fmt.Println(err)
	}

	// The connection is lost after the platform read the request: the
	// values may be stored, and they are not sent twice.
	srv.SetFaults(thethingstest.Faults{DropEvery: 1, DropStores: true})
	err = c.Write(ctx, []thethings.Value{{Key: "temperature", Value: 22}})
	if errors.As(err, &we) {
		fmt.Println(len(we.Values), "value, unknown:", we.Unknown, "- key", we.Values[0].Key)
		fmt.Println("outcome unknown:", errors.Is(err, thethings.ErrOutcomeUnknown))
	}
	// Output:
	// 2 values not written, unknown: false
	// invalid key: true
	// thethings: 2 values not written: values[1] (key "bad key"): key "bad key": character ' ' not allowed (letters, digits, '.', '-', '_'): invalid key
	// 1 value, unknown: true - key temperature
	// outcome unknown: true
}

// WithStore(false) pushes values to the thing's subscribers without storing
// them; WithBroadcast(false) stores them without pushing.
func ExampleWithStore() {
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
	ctx := context.Background()

	if err := c.Write(ctx, []thethings.Value{{Key: "position", Value: 7}}, thethings.WithStore(false)); err != nil {
		log.Fatal(err)
	}
	if err := c.Write(ctx, []thethings.Value{{Key: "backfill", Value: 1}}, thethings.WithBroadcast(false)); err != nil {
		log.Fatal(err)
	}
	fmt.Println("position stored:", srv.StoredCount("my-thing-token", "position"))
	fmt.Println("backfill stored:", srv.StoredCount("my-thing-token", "backfill"))
	// Output:
	// position stored: 0
	// backfill stored: 1
}

// A write split into several requests can fail with one WriteError per
// fate, joined; FailedValues collects the values of all of them.
func ExampleFailedValues() {
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

	// 250 values go out as three requests of 100, 100 and 50. The
	// connection of the second is lost after the platform read it.
	values := make([]thethings.Value, 250)
	for i := range values {
		values[i] = thethings.Value{Key: "counter", Value: i}
	}
	srv.SetFaults(thethingstest.Faults{DropEvery: 2, DropStores: true})
	err = c.Write(context.Background(), values)

	notWritten, unknown := thethings.FailedValues(err)
	fmt.Println("may be stored:", len(unknown), "from", unknown[0].Value)
	fmt.Println("not written:", len(notWritten), "from", notWritten[0].Value)
	// Output:
	// may be stored: 100 from 100
	// not written: 50 from 200
}

// A spooled Writer keeps its buffer in a directory: Add returns once the
// values are on disk, so they survive a crash or a reboot, and the next
// Writer on the same directory sends what the platform has not confirmed,
// exactly once.
func ExampleWithSpool() {
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
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "readings-spool")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	w, err := c.NewWriter(thethings.WithSpool(dir), thethings.WithSpoolLimit(64<<20))
	if err != nil {
		log.Fatal(err) // a spool in use by another Writer, or damaged
	}
	for i := range 250 {
		if err := w.Add(ctx, thethings.Value{Key: "counter", Value: i}); err != nil {
			log.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored:", srv.StoredCount("my-thing-token", "counter"))
	// Output:
	// stored: 250
}

// Stats tells a device whether it is online and how much is waiting.
func ExampleWriter_Stats() {
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
	ctx := context.Background()

	w, err := c.NewWriter()
	if err != nil {
		log.Fatal(err)
	}
	for i := range 150 {
		if err := w.Add(ctx, thethings.Value{Key: "counter", Value: i}); err != nil {
			log.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	st := w.Stats()
	fmt.Printf("online: %v, pending: %d, sent: %d\n", st.Online, st.Pending, st.Sent)
	if err := w.Close(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// online: true, pending: 0, sent: 150
}
