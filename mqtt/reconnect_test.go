package mqtt_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/mqtt"
)

// A broker that accepts every connection and drops it at once does not
// get a reconnect storm (issue 20: 12.8 a second, forever): the backoff
// only starts over after a connection lived, so the waits between
// reconnects keep doubling from 100ms.
func TestNoReconnectStorm(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dropFirst := make(chan struct{})
	var (
		mu sync.Mutex
		at []time.Time
		wg sync.WaitGroup
	)
	accepted := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Time(nil), at...)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			at = append(at, time.Now())
			first := len(at) == 1
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if _, err := packets.ReadPacket(c); err != nil { // CONNECT
					return
				}
				if _, err := c.Write([]byte{0x20, 2, 0, 0}); err != nil { // CONNACK
					return
				}
				if first {
					<-dropFirst // Dial returns with this one
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })

	c, err := mqtt.Dial(testkit.Ctx(t, 0), "thing-token", mqtt.WithBroker("tcp://"+ln.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	close(dropFirst)
	if !testkit.Eventually(t, "five reconnects", func() bool { return len(accepted()) >= 6 }) {
		return
	}
	got := accepted()
	for i := 2; i < len(got); i++ {
		// Wait n (from 0) before reconnect n+1 is at least half of
		// 100ms*2^n; a storm would wait 50..100ms every time.
		n := i - 1
		least := (100 * time.Millisecond << n) / 2
		if gap := got[i].Sub(got[i-1]); gap < least {
			t.Errorf("reconnect %d came %s after the one before, want at least %s", i, gap, least)
		}
	}
}
