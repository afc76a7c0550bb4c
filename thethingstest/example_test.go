package thethingstest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// A test starts its own server with NewServer(t), which also closes it; a
// program (or an Example, which has no *testing.T) uses New, Start and
// Close. The SDK is pointed at it with WithBaseURL, and what the server
// stored is checked directly.
func Example() {
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
	at := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	err = c.Write(context.Background(), []thethings.Value{
		{Key: "temperature", Value: 21.5, Datetime: at},
		{Key: "temperature", Value: 22, Datetime: at.Add(time.Minute)},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range srv.Stored("my-thing-token", "temperature") { // newest first
		fmt.Println(r.Datetime.Format(time.TimeOnly), string(r.Value))
	}
	fmt.Println(srv.Requests(thethingstest.RouteWrite), "write request,", srv.Duplicates(), "duplicates")
	// Output:
	// 10:01:00 22
	// 10:00:00 21.5
	// 1 write request, 0 duplicates
}

// Outages behind a load balancer store the write and then answer an error,
// so a client cannot know that its values arrived. StoreThenFailEvery
// makes every Nth write do that, switchable at any time with SetFaults.
func ExampleFaults_storeThenFail() {
	srv, err := thethingstest.New(thethingstest.WithThingTokens("tok"))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	srv.SetFaults(thethingstest.Faults{StoreThenFailEvery: 2, StoreThenFailStatus: 504})

	for i := range 3 {
		body := fmt.Sprintf(`{"values":[{"key":"k","value":%d}]}`, i)
		resp, err := http.Post(srv.URL()+"things/tok", "application/json", bytes.NewBufferString(body))
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println(resp.Status, resp.Header.Get("Content-Type"))
	}
	fmt.Println("stored:", srv.StoredCount("tok", "k"))
	// Output:
	// 201 Created application/json
	// 504 Gateway Timeout text/html
	// 201 Created application/json
	// stored: 3
}

// WithControlAPI serves the ground truth and the faults over HTTP, for a
// server in another process or a test in another language.
func ExampleWithControlAPI() {
	srv, err := thethingstest.New(thethingstest.WithThingTokens("tok"), thethingstest.WithControlAPI())
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	root := srv.URL()[:len(srv.URL())-len("v2/")] // http://127.0.0.1:port/
	do := func(method, path, body string) {
		req, err := http.NewRequest(method, root+path, bytes.NewBufferString(body))
		if err != nil {
			log.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Print(string(b), "\n")
	}
	do("POST", "v2/things/tok", `{"values":[{"key":"k","value":1,"datetime":"2024-05-01T10:00:00Z"}]}`)
	do("GET", "_thethingstest/stored?token=tok&key=k", "")
	do("PUT", "_thethingstest/faults", `{"every503":3,"noRetryAfter":true}`)
	// Output:
	// {"status":"created"}
	// {"count":1,"values":[{"key":"k","value":1,"datetime":"2024-05-01T10:00:00.000Z"}]}
	// {"every503":3,"noRetryAfter":true}
}

// WithDataDir keeps what a Server acknowledged, for the next Server on the
// same directory: after a restart, a crash or kill -9.
func ExampleWithDataDir() {
	dir, err := os.MkdirTemp("", "thethingstest-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	srv, err := thethingstest.New(thethingstest.WithDataDir(dir), thethingstest.WithThingTokens("tok"))
	if err != nil {
		log.Fatal(err)
	}
	err = srv.Seed("tok", "temperature", thethingstest.Record{Value: json.RawMessage(`21.5`), Datetime: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)})
	if err != nil {
		log.Fatal(err)
	}
	srv.Close()

	again, err := thethingstest.New(thethingstest.WithDataDir(dir))
	if err != nil {
		log.Fatal(err)
	}
	defer again.Close()
	for _, r := range again.Stored("tok", "temperature") {
		fmt.Println(again.Tokens(), r.Key, string(r.Value), r.Datetime)
	}
	// Output:
	// [tok] temperature 21.5 2024-05-01 10:00:00 +0000 UTC
}
