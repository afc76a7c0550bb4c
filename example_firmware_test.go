package thethings_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/thethings-go/thethings/thethingstest"
)

func ExampleClient_LatestFirmware() {
	srv, c := startExampleEmulator()
	defer srv.Close()
	srv.AddFirmware("9", []byte("firmware 9"))
	srv.AddFirmware("10", []byte("firmware 10"))

	fw, ok, err := c.LatestFirmware(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ok, fw.Version)
	// Output: true 10
}

func ExampleClient_DownloadFirmware() {
	srv, c := startExampleEmulator()
	defer srv.Close()
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

func ExampleClient_CallFunction() {
	srv, c := startExampleEmulator(thethingstest.WithFunction("double", func(_ context.Context, params json.RawMessage) (any, error) {
		var p struct{ N int }
		if err := json.Unmarshal(params, &p); err != nil {
			return nil, err
		}
		return map[string]int{"n": 2 * p.N}, nil
	}))
	defer srv.Close()

	answer, err := c.CallFunction(context.Background(), "double", map[string]int{"n": 21})
	if err != nil {
		log.Fatal(err) // never retried once sent: a function has effects
	}
	fmt.Println(string(answer))
	// Output: {"n":42}
}

func ExampleClient_Resources() {
	srv, c := startExampleEmulator()
	defer srv.Close()
	if err := srv.Seed(exampleToken, "temperature", thethingstest.Record{Value: json.RawMessage("21.5"), Datetime: time.Now()}); err != nil {
		log.Fatal(err)
	}

	keys, err := c.Resources(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(keys)
	// Output: [temperature]
}
