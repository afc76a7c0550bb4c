package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/wire"
)

// maxQueue is how many messages may wait for a slow Subscribe loop; more
// are dropped and reported to it as one error.
const maxQueue = 1024

// listener is one Subscribe loop's queue of payloads.
type listener struct {
	mu      sync.Mutex
	queue   [][]byte
	dropped int
	notify  chan struct{} // capacity 1
}

func (l *listener) push(p []byte) {
	l.mu.Lock()
	if len(l.queue) >= maxQueue {
		l.dropped++
	} else {
		l.queue = append(l.queue, p)
	}
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

func (l *listener) take() (q [][]byte, dropped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	q, dropped = l.queue, l.dropped
	l.queue, l.dropped = nil, 0
	return q, dropped
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
	if cn == nil || cn.subscribed == want {
		return nil // a reconnect subscribes as it finds the listeners
	}
	if !want {
		// Not waiting for the UNSUBACK: a loop's end costs it no round
		// trip, and a SUBSCRIBE after it on this connection comes after it.
		cn.pc.Unsubscribe(c.topic())
		cn.subscribed = false
		return nil
	}
	t := cn.pc.Subscribe(c.topic(), c.cfg.qos, nil)
	if err := c.wait(ctx, t); err != nil {
		if isNotConnected(err) {
			return nil // the reconnect will do it
		}
		return c.fail("subscribe", err)
	}
	for _, code := range t.(*paho.SubscribeToken).Result() {
		if code > 2 {
			return &refusedError{code: code}
		}
	}
	cn.subscribed = true
	return nil
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
// down are not delivered (read them over REST if they matter).
//
// The sequence ends without an error when ctx ends or the loop breaks. A
// message that does not decode is yielded as an error and the sequence
// goes on; when only some of its items do not decode, a Message with the
// others comes first, then the error. A run of messages dropped because the
// loop fell more than 1024 messages behind is yielded as an error too, and
// the sequence goes on. It ends with an error when the Client is closed or
// the broker refuses the subscription.
func (c *Client) Subscribe(ctx context.Context) iter.Seq2[thethings.Message, error] {
	return func(yield func(thethings.Message, error) bool) {
		if ctx == nil {
			yield(thethings.Message{}, optionError("nil context"))
			return
		}
		if c.life.Err() != nil {
			yield(thethings.Message{}, errClosed)
			return
		}
		l := &listener{notify: make(chan struct{}, 1)}
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
			q, dropped := l.take()
			if dropped > 0 && ctx.Err() == nil {
				if !yield(thethings.Message{}, wire.Errorf("thethings: mqtt: %d messages dropped: the Subscribe loop fell more than %d behind", dropped, maxQueue)) {
					return
				}
			}
			for _, p := range q {
				if ctx.Err() != nil {
					return
				}
				values, err := decode(p)
				if len(values) > 0 && !yield(thethings.Message{Values: values}, nil) {
					return
				}
				if err != nil && !yield(thethings.Message{}, c.fail("message", err)) {
					return
				}
			}
		}
	}
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
