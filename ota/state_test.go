package ota

import (
	"strings"
	"testing"

	"github.com/thethings-go/thethings/internal/fsys/crashfs"
)

// However many reports wait, and however long their errors, the state
// stays readable: the 16 newest are kept, their errors cut short.
func TestStateKeepsReportsBounded(t *testing.T) {
	m := crashfs.New().Put(crashTarget, "program v1", 0o755)
	st := state{Phase: phaseTrial, From: "1", To: "2", SHA256: strings.Repeat("a", 64)}
	for range 40 {
		st.queue(report{Version: strings.Repeat("<", maxVersionLen), State: StateFailed, Error: strings.Repeat("é<\x01", 5000)})
	}
	if err := writeState(m, crashTarget, st); err != nil {
		t.Fatal(err)
	}
	got, ok, err := readState(m, crashTarget)
	if err != nil || !ok || got.Phase != phaseTrial || len(got.Unsent) != maxUnsent {
		t.Fatalf("read back: phase %q, %d reports, ok %v, err %v", got.Phase, len(got.Unsent), ok, err)
	}
	if n := len(got.Unsent[0].Error); n > maxReportError {
		t.Errorf("a kept error of %d bytes, want at most %d", n, maxReportError)
	}
}
