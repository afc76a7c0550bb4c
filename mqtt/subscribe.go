package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/wire"
)

// SubscribeOption configures one Subscribe loop. An invalid option makes
// the sequence yield one error matching [thethings.ErrInvalidOption] and
// end, before any I/O.
type SubscribeOption func(*subscribeConfig) error

type subscribeConfig struct {
	onState    func(thethings.State, error)
	queueBytes int
}

// WithStateHandler reports the subscription's states, as the REST
// subscription's option of the same name does: [thethings.StateConnected]
// once the broker acknowledged the subscription (SUBACK), on the first
// connection and after every reconnect, so from then on the thing's
// writes reach the loop; [thethings.StateDisconnected] with the cause when
// the connection drops or a reconnect or a subscription fails; and
// [thethings.StateReconnecting] when a new connection attempt starts. f is
// called from the goroutine ranging over the subscription, in order with
// the messages, so it must not range over the subscription itself.
func WithStateHandler(f func(s thethings.State, cause error)) SubscribeOption {
	return func(c *subscribeConfig) error {
		if f == nil {
			return optionError("nil state handler")
		}
		c.onState = f
		return nil
	}
}

// WithQueueBytes bounds, in bytes, the messages waiting for the loop:
// [DefaultQueueBytes] (8 MiB, or the largest packet when that is more)
// unless set, 1 KiB at least. A message counts
// its payload plus 64 bytes. The MQTT connection is never held up for a
// slow loop (that would stall every Write and other loop, and a missed
// keep-alive would drop the connection): a message that does not fit is
// dropped, and the loop receives a [*DroppedError] in its place. A message
// larger than n is always dropped.
func WithQueueBytes(n int) SubscribeOption {
	return func(c *subscribeConfig) error {
		if n < minQueueBytes {
			return optionError("queue bytes %d below 1 KiB", n)
		}
		c.queueBytes = n
		return nil
	}
}

func newSubscribeConfig(opts []SubscribeOption, maxPacket int) (*subscribeConfig, error) {
	cfg := &subscribeConfig{queueBytes: max(DefaultQueueBytes, maxPacket+itemCost)}
	for _, o := range opts {
		if o == nil {
			return nil, optionError("nil subscribe option")
		}
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// deliver hands a received message to every Subscribe loop. It runs on
// the MQTT client's reading goroutine and never blocks.
func (c *Client) deliver(m paho.Message) {
	if m.Topic() != c.topic() {
		return
	}
	p := m.Payload()
	c.mu.Lock()
	for l := range c.listeners {
		if c.cur != nil {
			l.subscribed(c.cur) // a message says so before any SUBACK wakes a waiter
		}
		l.push(p)
	}
	c.mu.Unlock()
}

// syncSubscription subscribes the current connection to the thing topic
// when a Subscribe loop runs, and unsubscribes it when none does.
func (c *Client) syncSubscription(ctx context.Context) error {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	c.mu.Lock()
	cn, want := c.cur, len(c.listeners) > 0
	c.mu.Unlock()
	if cn == nil {
		return nil // a reconnect subscribes as it finds the listeners
	}
	if cn.subscribed == want {
		if want {
			c.broadcast(func(l *listener) { l.subscribed(cn) })
		}
		return nil
	}
	if !want {
		// Not waiting for the UNSUBACK: a loop's end costs it no round
		// trip, and a SUBSCRIBE after it on this connection comes after it.
		cn.pc.Unsubscribe(c.topic())
		cn.subscribed = false
		return nil
	}
	t := cn.pc.Subscribe(c.topic(), c.cfg.qos, nil)
	if err := c.wait(ctx, t, nil); err != nil {
		if isNotConnected(err) {
			return nil // the reconnect will do it
		}
		if ctx.Err() != nil {
			return c.fail("subscribe", err) // the caller's own end, not the connection's
		}
		return c.failed(c.fail("subscribe", err))
	}
	for _, code := range t.(*paho.SubscribeToken).Result() {
		if code > 2 {
			return c.failed(&refusedError{code: code})
		}
	}
	cn.subscribed = true
	c.broadcast(func(l *listener) { l.subscribed(cn) })
	return nil
}

// failed reports a failed subscription to the loops' state handlers.
func (c *Client) failed(err error) error {
	c.down(err)
	return err
}

// refusedError is a SUBACK that refused the subscription.
type refusedError struct{ code byte }

func (e *refusedError) Error() string {
	return fmt.Sprintf("thethings: mqtt: the broker refused the subscription (code %#x)", e.code)
}

// Subscribe delivers the thing's writes, REST or MQTT, as they happen: one
// [thethings.Message] per write. It subscribes when the loop starts and
// unsubscribes when it ends. When the connection drops the Client
// reconnects and subscribes again by itself; writes made while it was
// down are not delivered (read them over REST if they matter). Give
// [WithStateHandler] to learn when the subscription is active.
//
// The sequence ends without an error when ctx ends or the loop breaks. A
// message that does not decode is yielded as an error and the sequence
// goes on; when only some of its items do not decode, a Message with the
// others comes first, then the error. Messages dropped because the loop
// fell behind by more than its queue's bound (see [WithQueueBytes]) are
// yielded as a [*DroppedError] where they would have been, and a packet
// the Client refused for its size (see [WithMaxPacketSize]) as an error
// matching [ErrPacketTooLarge]; the sequence goes on after both. It ends
// with an error when the Client is closed, the broker refuses the
// subscription or an option is invalid.
func (c *Client) Subscribe(ctx context.Context, opts ...SubscribeOption) iter.Seq2[thethings.Message, error] {
	return func(yield func(thethings.Message, error) bool) {
		if ctx == nil {
			yield(thethings.Message{}, optionError("nil context"))
			return
		}
		cfg, err := newSubscribeConfig(opts, c.cfg.maxPacket)
		if err != nil {
			yield(thethings.Message{}, err)
			return
		}
		if c.life.Err() != nil {
			yield(thethings.Message{}, errClosed)
			return
		}
		l := newListener(cfg.queueBytes)
		c.mu.Lock()
		c.listeners[l] = struct{}{}
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			delete(c.listeners, l)
			c.mu.Unlock()
			if c.life.Err() == nil {
				_ = c.syncSubscription(c.life) // unsubscribes without waiting
			}
		}()
		if err := c.syncSubscription(ctx); err != nil {
			var refused *refusedError
			if c.life.Err() != nil {
				yield(thethings.Message{}, errClosed)
				return
			}
			if ctx.Err() != nil {
				return
			}
			if errors.As(err, &refused) {
				yield(thethings.Message{}, err)
				return
			}
			// The connection failed under the SUBSCRIBE: the reconnect
			// subscribes, as it does for every loop still running.
			c.cfg.logger.Warn("thethings: mqtt: subscribe failed; waiting for the reconnect", "broker", c.cfg.broker, "err", err.Error())
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-c.life.Done():
				yield(thethings.Message{}, errClosed)
				return
			case <-l.notify:
			}
			for it, ok := l.next(); ok; it, ok = l.next() {
				if ctx.Err() != nil || !c.hand(it, cfg, yield) {
					return
				}
			}
		}
	}
}

// hand gives one queued item to the loop or its state handler; false when
// the loop broke.
func (c *Client) hand(it item, cfg *subscribeConfig, yield func(thethings.Message, error) bool) bool {
	switch {
	case it.state != 0:
		if cfg.onState != nil {
			cfg.onState(it.state, it.err)
		}
		return true
	case it.err != nil:
		return yield(thethings.Message{}, it.err)
	}
	values, err := decode(it.payload)
	if len(values) > 0 && !yield(thethings.Message{Values: values}, nil) {
		return false
	}
	return err == nil || yield(thethings.Message{}, c.fail("message", err))
}

// decode reads a message of the thing topic: the platform sends the REST
// stream's data array; a broker that forwards what a device published
// sends the REST write body, {"values":[...]}. The items that decode are
// returned even when others do not, with an error counting those.
func decode(p []byte) ([]thethings.Value, error) {
	p = bytes.TrimSpace(p)
	if len(p) > 0 && p[0] == '{' {
		var body struct {
			Values json.RawMessage `json:"values"`
		}
		if err := json.Unmarshal(p, &body); err != nil {
			return nil, err
		}
		if len(body.Values) == 0 {
			return nil, nil // an object of something else
		}
		p = body.Values
	}
	items, err := wire.DecodeFrameEach(p)
	values := make([]thethings.Value, len(items))
	for i := range items {
		it := &items[i]
		v := thethings.Value{Key: it.Key, Value: it.Value, Datetime: it.Time}
		if v.Datetime.IsZero() && it.RawTime != "" {
			if t, err := thethings.ParseTime(it.RawTime); err == nil {
				v.Datetime = t
			}
		}
		if it.Geo != nil {
			v.Geo = &thethings.Geo{Lat: it.Geo.Lat, Long: it.Geo.Long}
		}
		values[i] = v
	}
	return values, err
}
