// Command app is the program the end-to-end tests of package ota update:
// its version is set at build time with -ldflags "-X main.version=N".
//
//	app version   print the version
//	app update    apply the platform's latest firmware
//	app run       Boot (re-executing after a rollback), Commit when
//	              OTA_COMMIT=1, then print the version
//
// The platform and the key come from THETHINGS_BASE_URL, THETHINGS_TOKEN
// and OTA_PUBLIC_KEY (base64).
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"
	"syscall"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/ota"
)

var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
}

func run() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if len(os.Args) < 2 {
		return fmt.Errorf("usage: app version|update|run")
	}
	switch os.Args[1] {
	case "version":
		fmt.Println(version)
	case "update":
		u, err := updater()
		if err != nil {
			return err
		}
		applied, err := u.Apply(context.Background())
		if err != nil {
			return err
		}
		fmt.Println("applied:", applied)
	case "run":
		rolledBack, err := ota.Boot(self)
		if err != nil {
			return err
		}
		if rolledBack {
			return syscall.Exec(self, os.Args, os.Environ())
		}
		if os.Getenv("OTA_COMMIT") == "1" {
			u, err := updater()
			if err != nil {
				return err
			}
			if err := u.Commit(); err != nil {
				return err
			}
		}
		fmt.Println(version)
	default:
		return fmt.Errorf("unknown command %q", os.Args[1])
	}
	return nil
}

func updater() (*ota.Updater, error) {
	pub, err := base64.StdEncoding.DecodeString(os.Getenv("OTA_PUBLIC_KEY"))
	if err != nil {
		return nil, err
	}
	c, err := thethings.NewClient(os.Getenv("THETHINGS_TOKEN"), thethings.WithBaseURL(os.Getenv("THETHINGS_BASE_URL")))
	if err != nil {
		return nil, err
	}
	return ota.NewUpdater(c, ed25519.PublicKey(pub), version)
}
