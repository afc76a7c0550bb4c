package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/wire"
)

// Option configures Dial and Activate. An invalid option makes them fail
// with an error matching [thethings.ErrInvalidOption] before any I/O.
type Option func(*config) error

type config struct {
	broker       string // as given, for messages
	addr         string // host:port
	host         string
	tls          bool
	tlsConfig    *tls.Config
	clientID     string
	keepAlive    time.Duration
	will         []byte // the Last Will's write body, or nil
	qos          byte
	logger       *slog.Logger
	maxPacket    int
	writeTimeout time.Duration
	timedOut     error // the cause of a Write's timeout
}

// DefaultWriteTimeout bounds a [Client.Write] whose ctx has no deadline,
// unless [WithWriteTimeout] says otherwise: 30s, the bound the REST client
// puts on a request.
const DefaultWriteTimeout = 30 * time.Second

const (
	defaultKeepAlive = 60 * time.Second
	maxKeepAlive     = 65535 * time.Second // the protocol's field is 16 bits of seconds
)

func optionError(format string, args ...any) error {
	return wire.Errorf("thethings: mqtt: %s: %w", fmt.Sprintf(format, args...), thethings.ErrInvalidOption)
}

func newConfig(opts []Option) (*config, error) {
	cfg := &config{keepAlive: defaultKeepAlive, qos: 1, maxPacket: DefaultMaxPacketSize, writeTimeout: DefaultWriteTimeout}
	if err := WithBroker(DefaultBroker)(cfg); err != nil {
		return nil, err
	}
	for _, o := range opts {
		if o == nil {
			return nil, optionError("nil option")
		}
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	if cfg.tlsConfig != nil && !cfg.tls {
		return nil, optionError("WithTLSConfig with the plain broker %s: use mqtts:// or ssl://", cfg.broker)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	cfg.timedOut = wire.Errorf("thethings: mqtt: write timeout %s (WithWriteTimeout): %w", cfg.writeTimeout, context.DeadlineExceeded)
	return cfg, nil
}

// WithBroker sets the broker's URL: mqtts:// or ssl:// for TLS (port 8883
// when none is given), mqtt:// or tcp:// for a plain connection (port 1883).
// The default is [DefaultBroker].
func WithBroker(rawURL string) Option {
	return func(c *config) error {
		u, err := url.Parse(rawURL)
		if err != nil {
			return optionError("broker URL %q: %v", rawURL, err)
		}
		var port string
		switch strings.ToLower(u.Scheme) {
		case "mqtts", "ssl":
			c.tls, port = true, "8883"
		case "mqtt", "tcp":
			c.tls, port = false, "1883"
		default:
			return optionError("broker URL %q: scheme must be mqtts, ssl, mqtt or tcp", rawURL)
		}
		if u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return optionError("broker URL %q: want scheme://host[:port] and nothing else", rawURL)
		}
		if p := u.Port(); p != "" {
			port = p
		}
		c.broker, c.host, c.addr = rawURL, u.Hostname(), net.JoinHostPort(u.Hostname(), port)
		return nil
	}
}

// WithTLSConfig sets the TLS configuration for an mqtts:// or ssl:// broker
// (a custom root CA, a client certificate). It is cloned; an empty
// ServerName is set to the broker's host name.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *config) error {
		if cfg == nil {
			return optionError("nil TLS config")
		}
		c.tlsConfig = cfg.Clone()
		return nil
	}
}

// WithClientID sets the MQTT client identifier. The default is random per
// Client ("thethings-" and 12 hex digits). Two connections with one
// identifier make the broker drop the older one.
func WithClientID(id string) Option {
	return func(c *config) error {
		if id == "" || len(id) > 65535 || !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
			return optionError("client ID must be 1..65535 bytes of UTF-8 without NUL")
		}
		c.clientID = id
		return nil
	}
}

// WithKeepAlive sets the MQTT keep-alive interval (default 60s, whole
// seconds from 1s to 65535s; a fraction is rounded up). The client pings
// the broker when idle that long and takes the connection for lost, and
// reconnects, when the ping goes unanswered for half the interval (at
// least 1s, at most 10s).
func WithKeepAlive(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 || d > maxKeepAlive {
			return optionError("keep-alive %v outside 1s..65535s", d)
		}
		c.keepAlive = (d + time.Second - 1).Truncate(time.Second)
		return nil
	}
}

// WithWill sets the Last Will: values the broker writes to the thing when
// the connection ends without Close (a dead link, a crash, a missed
// keep-alive). They are validated like [Client.Write] values; give them no
// Datetime so the platform stamps the moment the broker notices.
func WithWill(values ...thethings.Value) Option {
	return func(c *config) error {
		if len(values) == 0 {
			return optionError("WithWill without values")
		}
		will, err := encode(values, 0)
		if err != nil {
			return wire.Errorf("thethings: mqtt: last will: %w", err)
		}
		c.will = will
		return nil
	}
}

// WithQoS sets the quality of service of writes, the Last Will and the
// subscription: 1 (the default) or 0. With 1, [Client.Write] returns once
// the broker acknowledged the values; with 0 once they were handed to the
// network, with no acknowledgement.
func WithQoS(q byte) Option {
	return func(c *config) error {
		if q > 1 {
			return optionError("QoS %d: use 0 or 1", q)
		}
		c.qos = q
		return nil
	}
}

// WithLogger sets where connection events are logged (connected, lost,
// reconnecting; never the thing token). The default is silent.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		c.logger = l
		return nil
	}
}

// WithMaxPacketSize bounds a packet the broker sends, fixed header
// included: [DefaultMaxPacketSize] (1 MiB) unless set, 1 KiB at least and
// the protocol's largest packet (256 MiB) at most. A packet whose header
// declares more is refused as the header arrives, before anything of its
// size is allocated: the connection is closed, and the error matches
// [ErrPacketTooLarge]. Set it above the largest message a subscriber of
// the thing must receive.
func WithMaxPacketSize(n int) Option {
	return func(c *config) error {
		if n < minPacketSize || n > maxPacketSize {
			return optionError("max packet size %d outside 1 KiB..256 MiB", n)
		}
		c.maxPacket = n
		return nil
	}
}

// WithWriteTimeout bounds a [Client.Write] whose ctx has no deadline:
// waiting for the connection, sending, and the broker's acknowledgement
// together (default [DefaultWriteTimeout], 30s; it must be positive). A
// ctx with a deadline keeps its own. When the time is up, values sent but
// not acknowledged come in a [*thethings.WriteError] with Unknown set, and
// the error matches [context.DeadlineExceeded].
func WithWriteTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return optionError("write timeout %v not positive", d)
		}
		c.writeTimeout = d
		return nil
	}
}
