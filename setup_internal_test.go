// The internal tests' setup: a test server for the benchmarks' thing.
package thethings

import (
	"testing"

	"github.com/thethings-go/thethings/thethingstest"
)

// startBenchEmulator starts a test server that knows benchToken, closed
// when the benchmark ends.
func startBenchEmulator(b *testing.B) *thethingstest.Server {
	b.Helper()
	srv := thethingstest.NewServer(b, thethingstest.WithThingTokens(benchToken))
	b.Cleanup(func() { srv.Close() })
	return srv
}
