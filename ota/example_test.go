package ota_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/ota"
	"github.com/thethings-go/thethings/thethingstest"
)

func ExampleVerify() {
	pub, priv, err := ota.GenerateKey() // once, by the vendor
	if err != nil {
		log.Fatal(err)
	}
	var bundle bytes.Buffer
	if err := ota.Sign(&bundle, strings.NewReader("program v2"), "2", priv); err != nil {
		log.Fatal(err)
	}

	// On the device: dst is a scratch file, used only when Verify succeeds.
	var payload bytes.Buffer
	m, err := ota.Verify(&bundle, pub, &payload)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Version, m.Size, payload.String())
	// Output: 2 10 program v2
}

func ExampleUpdater() {
	// The platform, offering version 2 signed by the vendor.
	pub, priv, _ := ota.GenerateKey()
	var bundle bytes.Buffer
	_ = ota.Sign(&bundle, strings.NewReader("program v2"), "2", priv)
	srv, _ := thethingstest.New(thethingstest.WithThingTokens("device-token"))
	_ = srv.Start()
	defer srv.Close()
	srv.AddFirmware("2", bundle.Bytes())

	// The device, running version 1 from target (os.Executable() by default).
	dir, _ := os.MkdirTemp("", "ota-example")
	defer os.RemoveAll(dir)
	target := filepath.Join(dir, "program")
	_ = os.WriteFile(target, []byte("program v1"), 0o755)
	c, _ := thethings.NewClient("device-token", thethings.WithBaseURL(srv.URL()))

	u, err := ota.NewUpdater(c, pub, "1", ota.WithTarget(target))
	if err != nil {
		log.Fatal(err)
	}
	applied, err := u.Apply(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("applied:", applied)

	// The device restarts into version 2, which calls Boot first ...
	rolledBack, err := ota.Boot(target)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("rolled back:", rolledBack)
	// ... and commits once it runs well.
	u2, _ := ota.NewUpdater(c, pub, "2", ota.WithTarget(target))
	if err := u2.Commit(); err != nil {
		log.Fatal(err)
	}
	b, _ := os.ReadFile(target)
	fmt.Println(string(b))
	// Output:
	// applied: true
	// rolled back: false
	// program v2
}
