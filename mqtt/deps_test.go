package mqtt_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A program that imports only the root package links neither the MQTT
// client nor the broker; one that imports package mqtt links the client
// but not the broker.
func TestRootPackageLinksNoMQTT(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	for pkg, banned := range map[string][]string{
		"github.com/thethings-go/thethings":      {"paho.mqtt", "mochi-mqtt"},
		"github.com/thethings-go/thethings/mqtt": {"mochi-mqtt"},
	} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "github.com/thethings-go/thethings/internal/wire") {
			t.Fatalf("go list -deps %s lists no dependency of the SDK:\n%s", pkg, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range banned {
				if strings.Contains(dep, b) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
