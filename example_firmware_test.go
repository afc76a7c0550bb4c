package thethings_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// LatestFirmware picks the highest version the platform offers: as numbers
// when both versions are numbers (10 is newer than 9), else by semver.
func ExampleClient_LatestFirmware() {
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
	srv.AddFirmware("9", []byte("firmware 9"))
	srv.AddFirmware("10", []byte("firmware 10"))

	fw, ok, err := c.LatestFirmware(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ok, fw.Version)
	// Output: true 10
}

// DownloadFirmware streams a firmware file into any io.Writer, never more
// than maxBytes of it.
func ExampleClient_DownloadFirmware() {
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
	id := srv.AddFirmware("2", []byte("the new firmware"))

	// In a device, w is a file beside the program (see package ota, which
	// also checks the vendor's signature).
	var file bytes.Buffer
	n, err := c.DownloadFirmware(context.Background(), id, &file, 64<<20)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, file.String())
	// Output: 16 the new firmware
}

// CallFunction runs a cloud-code function for the thing and returns its
// answer as raw JSON.
func ExampleClient_CallFunction() {
	srv, err := thethingstest.New(thethingstest.WithThingTokens("my-thing-token"), thethingstest.WithFunction("double", func(_ context.Context, params json.RawMessage) (any, error) {
		var p struct{ N int }
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, err
		}
		return map[string]int{"n": 2 * p.N}, nil
	}))
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

	answer, err := c.CallFunction(context.Background(), "double", map[string]int{"n": 21})
	if err != nil {
		log.Fatal(err) // never retried once sent: a function has effects
	}
	fmt.Println(string(answer))
	// Output: {"n":42}
}

// Resources lists the keys the thing has values of.
func ExampleClient_Resources() {
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
	if err := srv.Seed("my-thing-token", "temperature", thethingstest.Record{Value: json.RawMessage("21.5"), Datetime: time.Now()}); err != nil {
		log.Fatal(err)
	}

	keys, err := c.Resources(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(keys)
	// Output: [temperature]
}
