package mqtt_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A program that imports only the root package links neither the MQTT
// client nor the broker.
func TestRootPackageLinksNoMQTT(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/thethings-go/thethings").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "paho.mqtt") || strings.Contains(dep, "mochi-mqtt") {
			t.Errorf("the root package depends on %s", dep)
		}
	}
}
