package stream

import (
	"testing"

	"go.uber.org/goleak"
)

// The watchdog's timer runs its callback on a goroutine of its own: none
// may outlive the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
