package mqtt

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/wire"
)

// batchSize is values per publish, as the REST client puts per request.
const batchSize = 100

// Write publishes values to the thing: one message of the REST write body
// per 100 values, in order. Values are validated exactly as
// [thethings.Client.Write] validates them, before anything is sent: a
// refused value fails the whole call with a [*thethings.WriteError] listing
// every value, whose Err matches [thethings.ErrInvalidKey] or
// [thethings.ErrInvalidValue]. An empty slice is a no-op.
//
// While the connection is being restored Write waits for it, bounded by
// ctx; a ctx without a deadline gets the Client's write timeout (see
// [WithWriteTimeout], 30s by default). With QoS 1 (the default) it returns once the broker acknowledged
// every message (PUBACK); with QoS 0 once they were handed to the network.
// The broker's acknowledgement is not a read-back: it says the broker took
// the message, not that the platform stored the values.
//
// Every failure is a *thethings.WriteError naming the values concerned.
// Values whose message was sent but not acknowledged (the connection
// dropped, ctx ended) come with Unknown set and match
// [thethings.ErrOutcomeUnknown]; later values, never sent, come in a second
// WriteError joined with errors.Join, as thethings.Client.Write reports.
func (c *Client) Write(ctx context.Context, values []thethings.Value) error {
	if ctx == nil {
		return &thethings.WriteError{Values: slices.Clone(values), Err: optionError("nil context")}
	}
	if len(values) == 0 {
		return nil
	}
	var expired <-chan time.Time // the write timeout, when ctx has no deadline
	if _, ok := ctx.Deadline(); !ok {
		t := timers.Get().(*time.Timer)
		t.Reset(c.cfg.writeTimeout)
		defer func() {
			t.Stop()
			timers.Put(t)
		}()
		expired = t.C
	}
	bodies := make([][]byte, 0, (len(values)+batchSize-1)/batchSize)
	for lo := 0; lo < len(values); lo += batchSize {
		body, err := encode(values[lo:min(lo+batchSize, len(values))], lo)
		if err != nil {
			return &thethings.WriteError{Values: slices.Clone(values), Err: err}
		}
		bodies = append(bodies, body)
	}
	for i, body := range bodies {
		lo, hi := i*batchSize, min((i+1)*batchSize, len(values))
		if err := c.publish(ctx, body, expired); err != nil {
			var unknown *outcomeUnknown
			if !errors.As(err, &unknown) {
				return &thethings.WriteError{Values: slices.Clone(values[lo:]), Err: err}
			}
			first := &thethings.WriteError{Values: slices.Clone(values[lo:hi]), Unknown: true, Err: unknown.err}
			if hi == len(values) {
				return first
			}
			return errors.Join(first, &thethings.WriteError{
				Values: slices.Clone(values[hi:]),
				Err:    wire.Errorf("thethings: mqtt: not sent: message %d of %d failed before it", i+1, len(bodies)),
			})
		}
	}
	return nil
}

// outcomeUnknown marks a publish that may have reached the broker.
type outcomeUnknown struct{ err error }

func (e *outcomeUnknown) Error() string { return e.err.Error() }

// timers are stopped timers for the write timeout: a Write without a
// deadline costs no allocation for it.
var timers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// publish sends one message on the thing topic and waits for its
// acknowledgement (QoS 1) or its hand-off to the network (QoS 0), bounded
// by ctx and the write timeout's expired (nil: none).
func (c *Client) publish(ctx context.Context, body []byte, expired <-chan time.Time) error {
	for {
		cn, err := c.current(ctx, expired)
		if err != nil {
			return err
		}
		if ctx.Err() != nil { // certainly not sent
			return c.fail("publish", context.Cause(ctx))
		}
		t := cn.pc.Publish(c.topic(), c.cfg.qos, false, body)
		err = c.wait(ctx, t, expired)
		switch {
		case err == nil:
			return nil
		case isNotConnected(err):
			// Lost between current and Publish: nothing was sent; wait
			// for the next connection.
			c.setDownIf(cn)
			continue
		}
		if r := cn.refused(); r != nil {
			err = r // the connection ended on an oversized packet
		}
		return &outcomeUnknown{err: c.fail("publish", err)}
	}
}

// setDownIf marks cn as gone if it is still the current connection (the
// connection-lost callback may not have run yet).
func (c *Client) setDownIf(cn *conn) {
	c.mu.Lock()
	if c.cur == cn {
		c.cur = nil
		c.up = make(chan struct{})
	}
	c.mu.Unlock()
}
