// Package mqtt speaks the thethings.iO device API over MQTT 3.1.1, with the
// same [thethings.Value] and [thethings.Message] types, the same validation
// and the same errors as the REST client in package thethings.
//
// The platform's broker takes the REST write body on the topic
// v2/things/{thingToken} and sends the thing's writes, REST or MQTT, to
// subscribers of that topic as the REST subscription's data array.
// A [Client] holds one long-lived connection: it reconnects by itself when the
// link drops and subscribes again, so a device on a cellular link pays for
// one TLS handshake, not one per request.
//
// The thing token is part of every topic; it is never in an error, a log
// line or a printed form of a [Client].
//
// What the broker sends is bounded: a packet by [WithMaxPacketSize], refused
// before it is allocated, and what waits for each Subscribe loop by
// [WithQueueBytes]. A Write whose ctx has no deadline is bounded by
// [WithWriteTimeout].
package mqtt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

// DefaultBroker is the platform's broker, over TLS.
const DefaultBroker = "mqtts://mqtt.thethings.io:8883"

const (
	redacted       = "***"
	topicPrefix    = "v2/things/"
	connectTimeout = 30 * time.Second
	quiesce        = 250 // ms to let a DISCONNECT out on Close
	minBackoff     = 100 * time.Millisecond
	maxBackoff     = 30 * time.Second
)

// errClosed is what a closed Client answers.
var errClosed = wire.Errorf("thethings: mqtt: client closed: %w", net.ErrClosed)

// Client is one thing's MQTT connection. It is safe for concurrent use.
// Close it when done: it holds a connection and a goroutine that restores
// the connection when it drops.
type Client struct {
	// The token, its topic and what removes it from text are closures: fmt
	// prints a func as an address under every verb, so no printed form of a
	// Client, of a copy of one or of a struct holding either reaches the
	// token.
	token  func() string
	topic  func() string
	redact func(string) string
	cfg    *config

	life   context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	subMu sync.Mutex // serializes (un)subscribe decisions

	mu        sync.Mutex
	cur       *conn         // nil while reconnecting
	up        chan struct{} // closed while cur != nil
	listeners map[*listener]struct{}
	cause     error // why the last connection ended, for StateReconnecting
}

// conn is one MQTT session; a Client makes a new one for every reconnect.
type conn struct {
	pc         paho.Client
	lost       chan error  // the connection-lost callback's cause
	got        atomic.Bool // a message arrived on it
	subscribed bool        // guarded by Client.subMu

	guardMu sync.Mutex
	guard   *guardedConn // set when the network connection is open
}

// refused is the packet-size guard's error, when it refused a packet.
func (cn *conn) refused() error {
	cn.guardMu.Lock()
	defer cn.guardMu.Unlock()
	return cn.guard.tripped()
}

// Dial connects to the broker as the thing with the given token. It
// returns once the broker accepted the connection; ctx bounds that. Bad
// options (thethings.ErrInvalidOption), an empty token
// (thethings.ErrNoToken) or one that cannot be part of a topic
// (thethings.ErrInvalidToken) fail before any I/O.
func Dial(ctx context.Context, thingToken string, opts ...Option) (*Client, error) {
	if ctx == nil {
		return nil, optionError("nil context")
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if err := checkToken(thingToken); err != nil {
		return nil, err
	}
	c := newClient(thingToken, cfg)
	cn, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.setUp(cn)
	c.wg.Add(1)
	go c.run(cn)
	cfg.logger.Info("thethings: mqtt: connected", "broker", cfg.broker)
	return c, nil
}

// checkToken refuses, as thethings.NewClient does, an empty token
// (ErrNoToken) and one holding a space, a control character or invalid
// UTF-8 (ErrInvalidToken); and one holding a character that would break
// the topic: '/', '+' or '#'. The error does not show the token.
func checkToken(token string) error {
	if token == "" {
		return wire.Errorf("thethings: mqtt: %w", thethings.ErrNoToken)
	}
	for i, r := range []rune(token) {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError || r == '/' || r == '+' || r == '#' {
			return wire.Errorf("thethings: mqtt: thing token holds a space, a control character, invalid UTF-8 or one of / + # at rune %d (%q): %w",
				i, r, thethings.ErrInvalidToken)
		}
	}
	return nil
}

func newClient(token string, cfg *config) *Client {
	if cfg.clientID == "" {
		cfg.clientID = "thethings-" + randomHex(6)
	}
	life, cancel := context.WithCancel(context.Background())
	topic := topicPrefix + token
	return &Client{
		token:     func() string { return token },
		topic:     func() string { return topic },
		redact:    redactor(token).Replace,
		cfg:       cfg,
		life:      life,
		cancel:    cancel,
		up:        make(chan struct{}),
		listeners: make(map[*listener]struct{}),
	}
}

// redactor replaces token with "***"; it changes nothing without a token.
func redactor(token string) *strings.Replacer {
	if token == "" {
		return strings.NewReplacer()
	}
	return strings.NewReplacer(token, redacted, url.PathEscape(token), redacted)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ThingToken returns the thing token: persist it after [Activate].
func (c *Client) ThingToken() string { return c.token() }

// String describes the client without its token.
func (c *Client) String() string {
	if c == nil {
		return "mqtt.Client(nil)"
	}
	return fmt.Sprintf("mqtt.Client{broker: %s, thing: %s}", c.cfg.broker, redacted)
}

// GoString is String: the token is never printed.
func (c *Client) GoString() string { return c.String() }

// Format prints String under every verb.
func (c *Client) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// LogValue is String for log/slog.
func (c *Client) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON encodes String, so a Client inside a logged struct shows no token.
func (c *Client) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// fail wraps err under "thethings: mqtt: what: ", token redacted, keeping
// err matchable with errors.Is and errors.As.
func (c *Client) fail(what string, err error) error {
	return &wrapped{msg: wire.OnePrefix("thethings: mqtt: " + what + ": " + c.redact(err.Error())), err: err}
}

type wrapped struct {
	msg string
	err error
}

func (e *wrapped) Error() string { return e.msg }
func (e *wrapped) Unwrap() error { return e.err }

// Close disconnects and stops reconnecting. Subscriptions end; Write and
// Subscribe fail afterwards. No goroutine of the Client is left when it
// returns. It is idempotent and always returns nil.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.cancel()
		c.wg.Wait()
	})
	return nil
}

// dial opens the network connection, TLS included, bounded by ctx.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: connectTimeout}
	nc, err := d.DialContext(ctx, "tcp", c.cfg.addr)
	if err != nil || !c.cfg.tls {
		return nc, err
	}
	tc := c.cfg.tlsConfig
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		tc = tc.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = c.cfg.host
	}
	t := tls.Client(nc, tc)
	if err := t.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return t, nil
}

// session opens one MQTT session, bounded by ctx, with the Last Will if
// one was set.
func (c *Client) session(ctx context.Context) (*conn, error) {
	cn := &conn{lost: make(chan error, 1)}
	var (
		watchMu sync.Mutex
		stop    func() bool
	)
	o := paho.NewClientOptions().
		AddBroker("tcp://" + c.cfg.addr).
		SetClientID(c.cfg.clientID).
		SetKeepAlive(c.cfg.keepAlive).
		SetPingTimeout(min(max(c.cfg.keepAlive/2, time.Second), 10*time.Second)).
		SetConnectTimeout(connectTimeout).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(true).
		SetProtocolVersion(4).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			cn.got.Store(true)
			c.deliver(m)
		}).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			// paho runs this on a goroutine of its own that Close cannot
			// wait for: it only hands the cause to the session's owner.
			if r := cn.refused(); r != nil {
				err = r
			}
			select {
			case cn.lost <- err:
			default:
			}
		}).
		SetCustomOpenConnectionFn(func(*url.URL, paho.ClientOptions) (net.Conn, error) {
			nc, err := c.dial(ctx)
			if err != nil {
				return nil, err
			}
			// Until the broker answers, ctx ending closes the connection.
			s := context.AfterFunc(ctx, func() { nc.Close() })
			watchMu.Lock()
			stop = s
			watchMu.Unlock()
			g := guard(nc, c.cfg.maxPacket)
			cn.guardMu.Lock()
			cn.guard = g
			cn.guardMu.Unlock()
			return g, nil
		})
	if c.cfg.will != nil {
		o.SetBinaryWill(c.topic(), c.cfg.will, c.cfg.qos, false)
	}
	cn.pc = paho.NewClient(o)
	t := cn.pc.Connect()
	<-t.Done() // the dial and the handshake end with ctx or their timeouts
	watchMu.Lock()
	s := stop
	watchMu.Unlock()
	if s != nil && !s() {
		if t.Error() == nil {
			cn.pc.Disconnect(0)
		}
		return nil, c.fail("connect to "+c.cfg.broker, context.Cause(ctx))
	}
	if err := t.Error(); err != nil {
		if r := cn.refused(); r != nil {
			err = r
		} else if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, c.fail("connect to "+c.cfg.broker, err)
	}
	return cn, nil
}

// setUp makes cn the current connection.
func (c *Client) setUp(cn *conn) {
	c.mu.Lock()
	c.cur = cn
	close(c.up)
	c.mu.Unlock()
}

// setDown marks the Client as reconnecting.
func (c *Client) setDown() {
	c.mu.Lock()
	if c.cur != nil {
		c.cur = nil
		c.up = make(chan struct{})
	}
	c.mu.Unlock()
}

// current waits for a live connection, bounded by ctx, Close and the
// write timeout's expired (nil: none).
func (c *Client) current(ctx context.Context, expired <-chan time.Time) (*conn, error) {
	for {
		c.mu.Lock()
		cn, up := c.cur, c.up
		c.mu.Unlock()
		if c.life.Err() != nil {
			return nil, errClosed
		}
		if cn != nil {
			return cn, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, c.fail("waiting for the broker", context.Cause(ctx))
		case <-expired:
			return nil, c.fail("waiting for the broker", c.cfg.timedOut)
		case <-c.life.Done():
			return nil, errClosed
		}
	}
}

// run restores the connection whenever it drops, until Close, through
// the SDK's one retry loop: 100ms doubling to 30s, jittered down by up to
// half. The backoff starts over only after a connection lived (it
// delivered a message or stayed up past the longest wait): a broker that
// accepts and drops at once meets ever longer waits.
func (c *Client) run(cn *conn) {
	defer c.wg.Done()
	log := c.cfg.logger
	loop := transport.Loop{Policy: transport.Policy{MinWait: minBackoff, MaxWait: maxBackoff}, Max: -1}
	waitFirst := cn == nil // from Activate, whose first connect failed
	n := 0                 // reconnect attempts since the last connection
	loop.Run(c.life, func(ctx context.Context) transport.Step {
		if waitFirst {
			waitFirst = false
			return transport.Step{Retry: true} // wait before the first dial, as after a loss
		}
		if cn == nil {
			n++
			var err error
			if cn, err = c.reconnect(ctx, n); err != nil {
				return transport.Step{Err: err, Retry: ctx.Err() == nil}
			}
			n = 0
		}
		up := time.Now()
		select {
		case <-ctx.Done():
			c.setDown()
			cn.pc.Disconnect(quiesce)
			log.Info("thethings: mqtt: closed", "broker", c.cfg.broker)
			return transport.Step{}
		case err := <-cn.lost:
			c.lost(err)
			c.setDown()
			log.Warn("thethings: mqtt: connection lost", "broker", c.cfg.broker, "err", c.redact(errString(err)))
			lived := cn.got.Load() || time.Since(up) >= maxBackoff
			cn = nil
			return transport.Step{Err: err, Retry: true, Lived: lived}
		}
	})
}

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// reconnect makes one attempt to open a session subscribed as the
// listeners want.
func (c *Client) reconnect(ctx context.Context, attempt int) (*conn, error) {
	log := c.cfg.logger
	log.Info("thethings: mqtt: reconnecting", "broker", c.cfg.broker, "attempt", attempt)
	cn, err := c.connect(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("thethings: mqtt: reconnect failed", "broker", c.cfg.broker, "err", err.Error())
		}
		return nil, err
	}
	c.setUp(cn)
	if err := c.syncSubscription(ctx); err != nil {
		if ctx.Err() == nil {
			log.Warn("thethings: mqtt: subscribe again failed", "broker", c.cfg.broker, "err", err.Error())
		}
		c.setDown()
		cn.pc.Disconnect(0)
		return nil, err
	}
	log.Info("thethings: mqtt: reconnected", "broker", c.cfg.broker)
	return cn, nil
}

// wait waits for a paho token, bounded by ctx, Close and the write
// timeout's expired (nil: none).
func (c *Client) wait(ctx context.Context, t paho.Token, expired <-chan time.Time) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-expired:
		return c.cfg.timedOut
	case <-c.life.Done():
		return errClosed
	}
}

// isNotConnected reports a paho refusal that sent nothing.
func isNotConnected(err error) bool { return errors.Is(err, paho.ErrNotConnected) }
