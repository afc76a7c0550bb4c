package thethings_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// Read returns one page of values, newest first; Next is the cursor of the
// page after it, empty after the oldest.
func ExampleClient_Read() {
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
	// What the platform holds: five temperatures, one a minute from 10:00 UTC.
	base := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	history := make([]thethingstest.Record, 5)
	for i := range history {
		history[i] = thethingstest.Record{Value: json.RawMessage(fmt.Sprintf("%d.5", 20+i)), Datetime: base.Add(time.Duration(i) * time.Minute)}
	}
	if err := srv.Seed("my-thing-token", "temperature", history...); err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	opts := &thethings.ReadOptions{Limit: 3}
	for {
		page, err := c.Read(ctx, "temperature", opts)
		if err != nil {
			log.Fatal(err)
		}
		for _, v := range page.Values {
			f, _ := v.Float64()
			fmt.Println(v.Datetime.Format(time.Kitchen), f)
		}
		if page.Next == "" {
			break // nothing older
		}
		// Next can be stored and used later, even by another process.
		opts.Cursor = page.Next
	}
	// Output:
	// 10:04AM 24.5
	// 10:03AM 23.5
	// 10:02AM 22.5
	// 10:01AM 21.5
	// 10:00AM 20.5
}

// Values yields every value of a time range, however many requests that
// takes.
func ExampleClient_Values() {
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
	// What the platform holds: 2,500 temperatures, one a minute from 10:00
	// UTC, going round from 20.5 to 29.5.
	base := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	history := make([]thethingstest.Record, 2500)
	for i := range history {
		history[i] = thethingstest.Record{Value: json.RawMessage(fmt.Sprintf("%d.5", 20+i%10)), Datetime: base.Add(time.Duration(i) * time.Minute)}
	}
	if err := srv.Seed("my-thing-token", "temperature", history...); err != nil {
		log.Fatal(err)
	}

	start := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	opts := &thethings.ReadOptions{Start: start, End: start.Add(time.Hour)}
	n, sum := 0, 0.0
	for v, err := range c.Values(context.Background(), "temperature", opts) {
		if err != nil {
			log.Fatal(err)
		}
		f, err := v.Float64()
		if err != nil {
			log.Fatal(err)
		}
		n, sum = n+1, sum+f
	}
	fmt.Printf("%d values, mean %.2f\n", n, sum/float64(n))
	// Output:
	// 60 values, mean 25.00
}

// Text gives a value in the form a person reads it: strings as they are,
// numbers and bools in their JSON form. Value is no fmt.Stringer, so that
// %s never hides a value that is not text.
func ExampleValue_Text() {
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

	t := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	err = c.Write(ctx, []thethings.Value{
		{Key: "status", Value: "on", Datetime: t},
		{Key: "status", Value: 9000, Datetime: t.Add(time.Minute)},
		{Key: "status", Value: true, Datetime: t.Add(2 * time.Minute)},
		{Key: "status", Value: map[string]int{"a": 1}, Datetime: t.Add(3 * time.Minute)},
	})
	if err != nil {
		log.Fatal(err)
	}
	page, err := c.Read(ctx, "status", nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, v := range page.Values {
		s, err := v.Text()
		fmt.Printf("%q %v\n", s, err != nil)
	}
	// Output:
	// "" true
	// "true" false
	// "9000" false
	// "on" false
}

// Decode fills a struct from an object value, as encoding/json would.
func ExampleValue_Decode() {
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

	type reading struct {
		Temp  float64 `json:"temp"`
		Hum   int     `json:"hum"`
		Label string  `json:"label"`
	}
	err = c.Write(ctx, []thethings.Value{{Key: "env", Value: reading{Temp: 21.5, Hum: 40, Label: "hall"}}})
	if err != nil {
		log.Fatal(err)
	}
	page, err := c.Read(ctx, "env", &thethings.ReadOptions{Limit: 1})
	if err != nil {
		log.Fatal(err)
	}
	var r reading
	if err := page.Values[0].Decode(&r); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", r)
	// Output:
	// {Temp:21.5 Hum:40 Label:hall}
}
