package thethings_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// A client for a thing whose token you already have. NewClient does no
// I/O; the token never appears in the client's printed form.
func ExampleNewClient() {
	// A local emulator of the platform; against the real one, leave out
	// WithBaseURL.
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
	if err := c.Write(context.Background(), []thethings.Value{{Key: "temperature", Value: 21.5}}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored:", srv.StoredCount("my-thing-token", "temperature"))
	fmt.Println("token in String():", strings.Contains(c.String(), "my-thing-token"))

	_, err = thethings.NewClient("")
	fmt.Println(err, errors.Is(err, thethings.ErrNoToken))
	// Output:
	// stored: 1
	// token in String(): false
	// thethings: no thing token true
}

// Activate turns an activation code into a thing token, once. Persist
// ThingToken afterwards: the code cannot be used again.
func ExampleActivate() {
	srv, err := thethingstest.New(thethingstest.WithActivationCodes(thethingstest.ActivationCode{Code: "A1B2-C3D4"}))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()

	c, err := thethings.Activate(ctx, "A1B2-C3D4", "", thethings.WithBaseURL(srv.URL()))
	if err != nil {
		log.Fatal(err)
	}
	token := c.ThingToken() // save it: the device's identity from now on
	fmt.Println("activated:", token != "", "thing id:", c.ThingID() != "")
	if err := c.Write(ctx, []thethings.Value{{Key: "boot", Value: 1}}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored:", srv.StoredCount(token, "boot"))

	// The code is spent.
	_, err = thethings.Activate(ctx, "A1B2-C3D4", "", thethings.WithBaseURL(srv.URL()))
	fmt.Println(errors.Is(err, thethings.ErrActivationCodeNotFound))
	// Output:
	// activated: true thing id: true
	// stored: 1
	// true
}

// A device without a real-time clock asks the platform for the time.
func ExampleClient_ServerTime() {
	platformNow := time.Date(2024, 5, 1, 10, 30, 0, 0, time.UTC)
	srv, err := thethingstest.New(
		thethingstest.WithThingTokens("my-thing-token"),
		thethingstest.WithClock(func() time.Time { return platformNow }),
	)
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

	now, err := c.ServerTime(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(now.Format(time.RFC3339))
	// Output:
	// 2024-05-01T10:30:00Z
}

// FormatTime gives the platform's documented form, always in UTC.
func ExampleFormatTime() {
	barcelona := time.FixedZone("CEST", 2*60*60)
	fmt.Println(thethings.FormatTime(time.Date(2015, 5, 20, 15, 0, 0, 0, barcelona)))
	// Output:
	// 20150520130000
}

// ParseTime reads every date form the platform uses; a time without a zone
// is UTC.
func ExampleParseTime() {
	for _, s := range []string{
		"20150520130000",
		"20150520T130000",
		"2015-05-20T13:00:00.123Z",
		"2015-05-20T15:00:00+02:00",
		"2015-05-20T13:00:00",
		"yesterday",
	} {
		t, err := thethings.ParseTime(s)
		if err != nil {
			fmt.Println(err, errors.Is(err, thethings.ErrInvalidValue))
			continue
		}
		fmt.Println(t.Format(time.RFC3339Nano))
	}
	// Output:
	// 2015-05-20T13:00:00Z
	// 2015-05-20T13:00:00Z
	// 2015-05-20T13:00:00.123Z
	// 2015-05-20T13:00:00Z
	// 2015-05-20T13:00:00Z
	// thethings: time "yesterday" is in no form the platform uses: invalid value true
}

// Answers of the platform other than success are *APIError. Match them
// with errors.Is against the sentinels, or read the details with errors.As.
// The thing token is redacted from the path.
func ExampleAPIError() {
	srv, err := thethingstest.New(thethingstest.WithThingTokens("my-thing-token"))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	c, err := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()))
	if err != nil {
		log.Fatal(err)
	}

	// A key that was never written.
	_, err = c.Read(ctx, "pressure", nil)
	fmt.Println(errors.Is(err, thethings.ErrNotFound), errors.Is(err, thethings.ErrResourceNotFound), errors.Is(err, thethings.ErrThingNotFound))
	var apiErr *thethings.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.StatusCode, apiErr.Message)
		fmt.Println(apiErr.Method, apiErr.Path)
	}

	// A token the platform does not know.
	unknown, err := thethings.NewClient("not-a-thing", thethings.WithBaseURL(srv.URL()))
	if err != nil {
		log.Fatal(err)
	}
	_, err = unknown.Read(ctx, "pressure", nil)
	fmt.Println(errors.Is(err, thethings.ErrThingNotFound))
	fmt.Println(err)
	// Output:
	// true true false
	// 404 resource not found
	// GET /v2/things/***/resources/pressure
	// true
	// thethings: GET /v2/things/***/resources/pressure: 404 Not Found: Thing token doesn't exist
}

// Reads are retried on 429 and 5xx answers; waits honour Retry-After but
// never exceed MaxWait. NoRetries disables them.
func ExampleWithRetry() {
	// Every second request is answered 503 with Retry-After: 1.
	srv, err := thethingstest.New(
		thethingstest.WithThingTokens("my-thing-token"),
		thethingstest.WithFaults(thethingstest.Faults{Every503: 2}),
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()

	c, err := thethings.NewClient("my-thing-token",
		thethings.WithBaseURL(srv.URL()),
		thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 3, MinWait: 10 * time.Millisecond, MaxWait: 100 * time.Millisecond}),
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Write(ctx, []thethings.Value{{Key: "temperature", Value: 21.5}}); err != nil { // request 1
		log.Fatal(err)
	}
	if _, err := c.Read(ctx, "temperature", nil); err != nil { // request 2 is refused, 3 succeeds
		log.Fatal(err)
	}
	fmt.Println("requests:", srv.Requests(thethingstest.RouteWrite)+srv.Requests(thethingstest.RouteRead))

	once, err := thethings.NewClient("my-thing-token",
		thethings.WithBaseURL(srv.URL()),
		thethings.WithRetry(thethings.NoRetries), // no retries
	)
	if err != nil {
		log.Fatal(err)
	}
	_, err = once.Read(ctx, "temperature", nil) // request 4 is refused
	var apiErr *thethings.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.StatusCode, apiErr.RetryAfter)
	}
	// Output:
	// requests: 3
	// 503 1s
}

// The SDK logs nothing unless given a logger. Retries are logged at Debug
// level, reconnects at Info, and the thing token never reaches the log.
func ExampleWithLogger() {
	srv, err := thethingstest.New(
		thethingstest.WithThingTokens("my-thing-token"),
		thethingstest.WithFaults(thethingstest.Faults{Every503: 1}),
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "wait" { // vary from run to run
				return slog.Attr{}
			}
			return a
		},
	}))
	c, err := thethings.NewClient("my-thing-token",
		thethings.WithBaseURL(srv.URL()),
		thethings.WithLogger(logger),
		thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 1, MinWait: 5 * time.Millisecond, MaxWait: 10 * time.Millisecond}),
	)
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Read(context.Background(), "temperature", nil)
	fmt.Println(errors.Is(err, thethings.ErrNotFound), err != nil)
	// Output:
	// level=DEBUG msg="thethings: retrying request" op="GET /v2/things/***/resources/temperature" attempt=1 status=503
	// false true
}

// WithBaseURL points a client at another deployment of the API, or at the
// emulator. A URL without a path gets "/v2/".
func ExampleWithBaseURL() {
	c, err := thethings.NewClient("my-thing-token", thethings.WithBaseURL("http://127.0.0.1:8080"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c)

	_, err = thethings.NewClient("my-thing-token", thethings.WithBaseURL("ftp://example.com"))
	fmt.Println(errors.Is(err, thethings.ErrInvalidOption))
	// Output:
	// thethings.Client{base: http://127.0.0.1:8080/v2/, thing: ***}
	// true
}

// A backend serving many things makes one Client per thing, all sharing one
// http.Client and so one pool of connections. Clients are cheap and safe for
// concurrent use.
func ExampleWithHTTPClient() {
	tokens := []string{"thing-1", "thing-2", "thing-3"}
	srv, err := thethingstest.New(thethingstest.WithThingTokens(tokens...))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	shared := &http.Client{Timeout: 10 * time.Second} // bounds one attempt
	clients := make(map[string]*thethings.Client)
	for _, tok := range tokens {
		c, err := thethings.NewClient(tok, thethings.WithBaseURL(srv.URL()), thethings.WithHTTPClient(shared))
		if err != nil {
			log.Fatal(err)
		}
		clients[tok] = c
	}
	for i, tok := range tokens {
		if err := clients[tok].Write(context.Background(), []thethings.Value{{Key: "load", Value: i}}); err != nil {
			log.Fatal(err)
		}
	}
	for _, tok := range tokens {
		fmt.Println(tok, string(srv.Stored(tok, "load")[0].Value))
	}
	// Output:
	// thing-1 0
	// thing-2 1
	// thing-3 2
}

// Read values hold what the platform sent; the accessors convert, also
// from numbers that were written as strings.
func ExampleValue_Float64() {
	srv, err := thethingstest.New(thethingstest.WithThingTokens("my-thing-token"))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	c, err := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()))
	if err != nil {
		log.Fatal(err)
	}
	err = c.Write(ctx, []thethings.Value{
		{Key: "fun", Value: "9000", Datetime: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)},
		{Key: "fun", Value: 21.5, Datetime: time.Date(2024, 5, 1, 11, 0, 0, 0, time.UTC)},
		{Key: "fun", Value: "over", Datetime: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
	})
	if err != nil {
		log.Fatal(err)
	}
	page, err := c.Read(ctx, "fun", &thethings.ReadOptions{Limit: 3})
	if err != nil {
		log.Fatal(err)
	}
	for _, v := range page.Values {
		f, err := v.Float64()
		fmt.Printf("%T %v %v\n", v.Value, f, errors.Is(err, thethings.ErrInvalidValue))
	}
	// Output:
	// string 0 true
	// json.Number 21.5 false
	// string 9000 false
}

// Flush waits until everything added so far is written, or reported: a
// device calls it before going to sleep.
func ExampleWriter_Flush() {
	srv, err := thethingstest.New(thethingstest.WithThingTokens("my-thing-token"))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	c, err := thethings.NewClient("my-thing-token", thethings.WithBaseURL(srv.URL()))
	if err != nil {
		log.Fatal(err)
	}

	w, err := c.NewWriter(thethings.WithFlushInterval(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close(ctx)
	for i := range 3 {
		if err := w.Add(ctx, thethings.Value{Key: "battery", Value: 90 - i}); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("before Flush:", srv.StoredCount("my-thing-token", "battery"))
	if err := w.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after Flush:", srv.StoredCount("my-thing-token", "battery"))
	// Output:
	// before Flush: 0
	// after Flush: 3
}

// After a lost connection, WithBackfill reads from history what was
// written to the keys while the stream was down, and delivers it before
// anything live. Here the emulator cuts every stream after 300ms, and a
// value is stored without being pushed (as one written during a gap).
func ExampleWithBackfill() {
	srv, err := thethingstest.New(
		thethingstest.WithThingTokens("my-thing-token"),
		thethingstest.WithFaults(thethingstest.Faults{StreamCutAfter: 300 * time.Millisecond}),
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := thethings.NewClient("my-thing-token",
		thethings.WithBaseURL(srv.URL()),
		thethings.WithRetry(thethings.RetryPolicy{MaxRetries: 3, MinWait: 50 * time.Millisecond, MaxWait: 200 * time.Millisecond}))
	if err != nil {
		log.Fatal(err)
	}

	connects := 0
	onState := func(s thethings.State, cause error) {
		if s != thethings.StateConnected || cause != nil {
			return
		}
		if connects++; connects == 1 {
			if err := c.Write(ctx, []thethings.Value{{Key: "door", Value: "closed"}}); err != nil {
				log.Fatal(err)
			}
			// Stored but not pushed: the subscription misses it live.
			if err := srv.Seed("my-thing-token", "door", thethingstest.Record{Value: json.RawMessage(`"open"`), Datetime: time.Now()}); err != nil {
				log.Fatal(err)
			}
		}
	}
	n := 0
	for msg, err := range c.Subscribe(ctx, thethings.WithBackfill("door"), thethings.WithStateHandler(onState)) {
		if err != nil {
			log.Fatal(err)
		}
		for _, v := range msg.Values {
			fmt.Printf("%s = %v (backfill: %v)\n", v.Key, v.Value, msg.Backfill)
		}
		if n++; n == 2 {
			break
		}
	}
	fmt.Println("connections:", connects)
	// Output:
	// door = closed (backfill: false)
	// door = open (backfill: true)
	// connections: 2
}
