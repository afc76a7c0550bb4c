//go:build unix

package thethings_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/thethingstest"
)

// A spool belongs to one thing: a Writer of another thing on the same
// directory gets ErrSpoolForeign and sends nothing of it, and a directory
// others may write in is refused.
func ExampleErrSpoolForeign() {
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
	root, err := os.MkdirTemp("", "spools")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	dir := filepath.Join(root, "thing-a")

	w, err := c.NewWriter(thethings.WithSpool(dir))
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Close(context.Background()); err != nil {
		log.Fatal(err)
	}
	other, err := thethings.NewClient("token-of-another-thing", thethings.WithBaseURL(srv.URL()))
	if err != nil {
		log.Fatal(err)
	}
	_, err = other.NewWriter(thethings.WithSpool(dir))
	fmt.Println("another thing:", errors.Is(err, thethings.ErrSpoolForeign))

	if err := os.Chmod(dir, 0o777); err != nil {
		log.Fatal(err)
	}
	_, err = c.NewWriter(thethings.WithSpool(dir))
	fmt.Println("world-writable:", errors.Is(err, thethings.ErrInvalidOption))
	// Output:
	// another thing: true
	// world-writable: true
}
