package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/thethings-go/thethings"
)

// magicExample starts a local emulator and returns a client for its thing.
func magicExample() (*thethings.Client, func()) {
	srv, c := startExampleEmulator()
	return c, func() { _ = srv.Close() }
}

func ExampleClient_SetLocation() {
	c, done := magicExample()
	defer done()
	ctx := context.Background()

	if err := c.SetLocation(ctx, thethings.Geo{Lat: 41.390205, Long: 2.154007}); err != nil {
		log.Fatal(err)
	}
	err := c.SetLocation(ctx, thethings.Geo{Lat: 123, Long: 2})
	fmt.Println(err)
	// Output:
	// thethings: latitude 123 outside [-90, 90]: invalid value
}

func ExampleClient_Location() {
	c, done := magicExample()
	defer done()
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

func ExampleClient_Settings() {
	c, done := magicExample()
	defer done()
	ctx := context.Background()

	err := c.SetSettings(ctx, map[string]any{"name": "My Thing", "interval": 60})
	if err != nil {
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

func ExampleClient_Setting() {
	c, done := magicExample()
	defer done()
	ctx := context.Background()

	err := c.SetSettings(ctx, map[string]any{"alarm": map[string]any{"max": 30.5, "enabled": true}})
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

func ExampleClient_SetSetting() {
	c, done := magicExample()
	defer done()
	ctx := context.Background()

	if err := c.SetSettings(ctx, map[string]any{"name": "My Thing", "interval": 60}); err != nil {
		log.Fatal(err)
	}
	// One entry changes; the others stay.
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
