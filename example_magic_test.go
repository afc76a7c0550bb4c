package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// SetLocation stores the thing's position; a position outside the globe is
// refused before any request.
func ExampleClient_SetLocation() {
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

	if err := c.SetLocation(ctx, thethings.Geo{Lat: 41.390205, Long: 2.154007}); err != nil {
		log.Fatal(err)
	}
	err = c.SetLocation(ctx, thethings.Geo{Lat: 123, Long: 2})
	fmt.Println(err)
	// Output:
	// thethings: latitude 123 outside [-90, 90]: invalid value
}

// Location reads back the position last stored; a thing that never stored
// one gets ErrResourceNotFound.
func ExampleClient_Location() {
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

	if _, err := c.Location(ctx); errors.Is(err, thethings.ErrResourceNotFound) {
		fmt.Println("no position yet")
	}
	if err := c.SetLocation(ctx, thethings.Geo{Lat: 41.390205, Long: 2.154007}); err != nil {
		log.Fatal(err)
	}
	g, err := c.Location(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("lat %v, long %v\n", g.Lat, g.Long)
	// Output:
	// no position yet
	// lat 41.390205, long 2.154007
}

// SetSettings replaces all of the thing's settings; Settings reads them back.
func ExampleClient_Settings() {
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

	if err := c.SetSettings(ctx, map[string]any{"name": "My Thing", "interval": 60}); err != nil {
		log.Fatal(err)
	}
	s, err := c.Settings(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s["name"], s["interval"])
	// Output:
	// My Thing 60
}

// Setting decodes one setting into a Go value, as encoding/json would; a
// dotted path reaches into an object.
func ExampleClient_Setting() {
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

	err = c.SetSettings(ctx, map[string]any{"alarm": map[string]any{"max": 30.5, "enabled": true}})
	if err != nil {
		log.Fatal(err)
	}
	var alarm struct {
		Max     float64 `json:"max"`
		Enabled bool    `json:"enabled"`
	}
	if err := c.Setting(ctx, "alarm", &alarm); err != nil {
		log.Fatal(err)
	}
	var maxTemp float64
	if err := c.Setting(ctx, "alarm.max", &maxTemp); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v %v\n", alarm, maxTemp)
	// Output:
	// {Max:30.5 Enabled:true} 30.5
}

// SetSetting changes one setting and leaves the others as they are.
func ExampleClient_SetSetting() {
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

	if err := c.SetSettings(ctx, map[string]any{"name": "My Thing", "interval": 60}); err != nil {
		log.Fatal(err)
	}
	if err := c.SetSetting(ctx, "interval", 300); err != nil {
		log.Fatal(err)
	}
	s, err := c.Settings(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s)
	// Output:
	// map[interval:300 name:My Thing]
}
