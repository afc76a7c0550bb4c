// Command ota-device is a device program that keeps itself up to date from
// the firmware files of its thing on thethings.iO, and survives a bad
// update:
//
//	go build -ldflags "-X main.version=1" -o device ./examples/ota-device
//	THETHINGS_TOKEN=... OTA_PUBLIC_KEY=$(cat vendor.pub) ./device
//
// At every start it calls ota.Boot first. The first start of a new version
// is its trial run: the program checks its health (here: it reaches the
// platform, and it was not built broken) and commits the update. A version
// that fails its health check, or crashes before committing, is rolled
// back at the next start: Boot puts the previous version back, and the
// program re-executes it. So the program runs under a supervisor that
// restarts it when it exits (systemd with Restart=always, a container
// restart policy); a failed health check exits with status 1.
//
// Then it checks for updates every -interval. When the platform offers a
// newer version, signed with the vendor's key (made with thethings firmware
// keygen, bundles with thethings firmware sign), it applies it and
// re-executes itself: the new version starts, on trial. -once checks once
// and exits (for a test, or a timer).
//
// Every step is reported under the key "firmware" ({"version","state",
// "error"}), so the fleet's dashboard shows which device runs what, and
// which rejected an update.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/ota"
)

// Set at build time with -ldflags "-X main.version=2".
var (
	version = "1"
	broken  = "" // "yes" builds a version whose health check fails
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "ota-device:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("ota-device", flag.ContinueOnError)
	interval := fs.Duration("interval", time.Hour, "how often to check for updates")
	once := fs.Bool("once", false, "check for an update once, then exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// First of all: roll back an update whose trial run did not commit.
	// Whatever Boot meets, this version runs: a device must start.
	rolledBack, err := ota.Boot(self)
	if err != nil {
		fmt.Fprintf(out, "boot: %v\n", err)
	}
	if rolledBack {
		fmt.Fprintf(out, "version %s was not committed: rolled back, restarting the previous version\n", version)
		return restart(self)
	}
	fmt.Fprintf(out, "version %s started\n", version)

	u, c, err := newUpdater(getenv)
	if err != nil {
		return err
	}
	if err := healthCheck(ctx, c); err != nil {
		// No Commit: the next start rolls this version back.
		return fmt.Errorf("version %s is unhealthy, not committing: %w", version, err)
	}
	if err := u.Commit(); err != nil {
		return err
	}
	fmt.Fprintf(out, "version %s is healthy\n", version)

	for {
		applied, err := u.Apply(ctx)
		switch {
		case applied:
			fmt.Fprintf(out, "update applied, restarting\n")
			return restart(self)
		case errors.Is(err, ctx.Err()) && ctx.Err() != nil:
			return nil
		case err != nil:
			fmt.Fprintf(out, "update failed: %v\n", err) // try again later
		}
		if *once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

// newUpdater reads the thing's token, the platform's URL and the vendor's
// public key from the environment.
func newUpdater(getenv func(string) string) (*ota.Updater, *thethings.Client, error) {
	pub, err := base64.StdEncoding.DecodeString(strings.TrimSpace(getenv("OTA_PUBLIC_KEY")))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, nil, fmt.Errorf("OTA_PUBLIC_KEY: want the vendor's public key in base64 (thethings firmware keygen)")
	}
	var opts []thethings.Option
	if base := getenv("THETHINGS_BASE_URL"); base != "" {
		opts = append(opts, thethings.WithBaseURL(base))
	}
	c, err := thethings.NewClient(getenv("THETHINGS_TOKEN"), opts...)
	if err != nil {
		return nil, nil, err
	}
	u, err := ota.NewUpdater(c, ed25519.PublicKey(pub), version)
	return u, c, err
}

// healthCheck is what this version must do before it is kept: here, reach
// the platform. A real device also checks its sensors and peripherals.
func healthCheck(ctx context.Context, c *thethings.Client) error {
	if broken != "" {
		return errors.New("built broken")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := c.ServerTime(ctx)
	return err
}
