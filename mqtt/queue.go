package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/thethings-go/thethings"
)

const (
	// DefaultQueueBytes bounds what waits for one slow Subscribe loop, unless
	// [WithQueueBytes] says otherwise: 8 MiB, eight messages of the default
	// largest packet or tens of thousands of typical ones, or the Client's
	// largest packet when that is more (see [WithMaxPacketSize]).
	DefaultQueueBytes = 8 << 20
	minQueueBytes     = 1 << 10
	// itemCost is what a queued message costs besides its payload: the
	// queue entry itself. Counting it keeps a flood of empty messages
	// bounded too.
	itemCost = 64
)

// DroppedError reports messages a Subscribe loop did not receive because
// it fell behind: its queue held its bound in bytes (see [WithQueueBytes])
// when they arrived. The sequence yields it where they would have been and
// goes on.
type DroppedError struct {
	Messages int   // messages dropped in a row
	Bytes    int64 // their payloads' size
	Limit    int   // the queue's bound in bytes
}

// Error says how many messages were dropped, and the bound.
func (e *DroppedError) Error() string {
	return fmt.Sprintf("thethings: mqtt: %d messages (%d bytes) dropped: the Subscribe loop fell behind by more than its queue's %d bytes",
		e.Messages, e.Bytes, e.Limit)
}

// item is one entry of a listener's queue: a message's payload, an error
// for the loop, or a state for its handler.
type item struct {
	payload []byte
	err     error
	state   thethings.State // 0 but for a state; err is then its cause
}

// listener is one Subscribe loop's queue. The MQTT client's reading
// goroutine pushes; it never blocks, so a slow loop slows neither the
// connection nor other loops.
type listener struct {
	limit  int
	notify chan struct{} // capacity 1

	mu        sync.Mutex
	queue     []item
	bytes     int
	drop      DroppedError
	connected *conn // the connection whose subscription was last reported
}

func newListener(limit int) *listener {
	return &listener{limit: limit, notify: make(chan struct{}, 1), drop: DroppedError{Limit: limit}}
}

// push queues a message, or counts it as dropped when it does not fit.
func (l *listener) push(p []byte) {
	l.mu.Lock()
	if cost := len(p) + itemCost; cost > l.limit-l.bytes {
		l.drop.Messages++
		l.drop.Bytes += int64(len(p))
	} else {
		l.flushDropped()
		l.queue = append(l.queue, item{payload: p})
		l.bytes += cost
	}
	l.mu.Unlock()
	l.wake()
}

// event queues an error or a state; they are few (a handful per
// connection) and always fit.
func (l *listener) event(it item) {
	l.mu.Lock()
	l.add(it)
	l.mu.Unlock()
	l.wake()
}

func (l *listener) add(it item) {
	l.flushDropped()
	l.queue = append(l.queue, it)
}

// subscribed queues StateConnected unless it was reported for cn already.
// The caller holds Client.mu.
func (l *listener) subscribed(cn *conn) {
	l.mu.Lock()
	report := l.connected != cn
	if report {
		l.connected = cn
		l.add(item{state: thethings.StateConnected})
	}
	l.mu.Unlock()
	if report {
		l.wake()
	}
}

// lost queues StateDisconnected with its cause.
func (l *listener) lost(cause error) {
	l.mu.Lock()
	l.connected = nil
	l.add(item{state: thethings.StateDisconnected, err: cause})
	l.mu.Unlock()
	l.wake()
}

// flushDropped turns the count of dropped messages into an error item, in
// the place they had.
func (l *listener) flushDropped() {
	if l.drop.Messages > 0 {
		d := l.drop
		l.queue = append(l.queue, item{err: &d})
		l.drop.Messages, l.drop.Bytes = 0, 0
	}
}

func (l *listener) wake() {
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// next pops the oldest item, freeing its place in the bound.
func (l *listener) next() (item, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) == 0 {
		l.flushDropped()
		if len(l.queue) == 0 {
			l.queue = nil
			return item{}, false
		}
	}
	it := l.queue[0]
	l.queue[0] = item{}
	l.queue = l.queue[1:]
	if it.state == 0 && it.err == nil {
		l.bytes -= len(it.payload) + itemCost
	}
	return it, true
}

// broadcast runs f on every listener.
func (c *Client) broadcast(f func(*listener)) {
	c.mu.Lock()
	for l := range c.listeners {
		f(l)
	}
	c.mu.Unlock()
}

// connect opens a session (see session), telling the Subscribe loops
// that an attempt starts and, when it fails, why.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	c.broadcast(func(l *listener) { l.event(item{state: thethings.StateReconnecting, err: c.cause}) })
	cn, err := c.session(ctx)
	if err != nil {
		c.down(err)
	}
	return cn, err
}

// lost tells the Subscribe loops that the connection dropped; a packet the
// size guard refused is an error they receive, besides the state.
func (c *Client) lost(cause error) {
	if cause == nil {
		cause = errors.New("closed")
	}
	cause = c.fail("connection lost", cause)
	if errors.Is(cause, ErrPacketTooLarge) {
		c.broadcast(func(l *listener) { l.event(item{err: cause}) })
	}
	c.down(cause)
}

// down reports StateDisconnected to the loops and keeps the cause for the
// next StateReconnecting.
func (c *Client) down(cause error) {
	c.mu.Lock()
	c.cause = cause
	c.mu.Unlock()
	c.broadcast(func(l *listener) { l.lost(cause) })
}
