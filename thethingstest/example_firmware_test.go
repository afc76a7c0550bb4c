package thethingstest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// A firmware added to the server is offered to every thing; a fault cuts
// each download after 4 bytes, and the client resumes it with Range.
func ExampleServer_AddFirmware() {
	srv, err := thethingstest.New(thethingstest.WithThingTokens("my-thing-token"),
		thethingstest.WithFirmwareFaults(thethingstest.FirmwareFaults{CutAfter: 4}))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	id := srv.AddFirmware("2", []byte("firmware v2"))

	c, err := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()))
	if err != nil {
		log.Fatal(err)
	}
	var file bytes.Buffer
	if _, err := c.DownloadFirmware(context.Background(), id, &file, 1<<20); err != nil {
		log.Fatal(err)
	}
	fmt.Println(file.String(), srv.Requests(thethingstest.RouteFirmwareDownload))
	// Output: firmware v2 3
}

// A cloud function served by the server, and how often it ran.
func ExampleWithFunction() {
	srv, err := thethingstest.New(thethingstest.WithThingTokens("my-thing-token"),
		thethingstest.WithFunction("greet", func(_ context.Context, params json.RawMessage) (any, error) {
			var name string
			if err := json.Unmarshal(params, &name); err != nil {
				return nil, err
			}
			return "hello " + name, nil
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
	answer, err := c.CallFunction(context.Background(), "greet", "device")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(answer), srv.Requests(thethingstest.FunctionRoute("greet")))
	// Output: "hello device" 1
}
