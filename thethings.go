// Package thethings is a client for the thethings.iO device REST API (v2).
//
// A thing is identified by its thing token. Create a [Client] for a token you
// already have with [NewClient], or activate a new thing with an activation
// code through [Activate] and persist [Client.ThingToken] afterwards.
//
//	c, err := thethings.NewClient(token)
//	if err != nil { ... }
//	err = c.Write(ctx, []thethings.Value{{Key: "temperature", Value: 21.5}})
//
// A Client is immutable and safe for concurrent use. A backend serving many
// things creates one Client per thing token; they may share one
// *http.Client (see [WithHTTPClient]). Nothing is logged unless
// [WithLogger] is given.
//
// # Errors
//
// Every error message starts with "thethings:", once. Answers of the platform are
// returned as [*APIError], which matches the sentinel errors with errors.Is:
// [ErrUnauthorized], [ErrNotFound], [ErrThingNotFound], [ErrResourceNotFound],
// [ErrActivationCodeNotFound] and [ErrRateLimited]. Bad input is refused before
// any I/O with an error matching [ErrNoToken], [ErrInvalidToken], [ErrInvalidOption],
// [ErrInvalidKey], [ErrInvalidValue] or [ErrInvalidCursor]. A request that
// may or may not have been processed matches [ErrOutcomeUnknown]. The other
// sentinels belong to one feature each: [ErrWriterClosed], [ErrSpoolLocked]
// and [ErrSpoolCorrupt] (Writer), [ErrPaginationStalled] (reads),
// [ErrIdleTimeout] and [ErrFrameTooLarge] (Subscribe).
//
// # Retries
//
// Reads are retried on network errors, 429 and 5xx answers but 501. Writes are
// retried only when the platform certainly did not store the values: the
// request never left this process, or it was answered 429, or (for values
// without a Datetime) 503 with Retry-After. Anything ambiguous (a connection
// lost after the request was sent, a 500, a timeout, and for values with a
// Datetime any 503, which a proxy may answer after the platform stored) is
// never re-sent blindly: [Client.Write] and the
// [Writer] read the values that carry a Datetime back and send again only
// what is missing; values without one are reported in a [*WriteError] with
// Unknown set, and the magic setters return an error matching
// [ErrOutcomeUnknown], unless [RetryPolicy.RetryWrites] asks for retries that
// may duplicate values. Activation is never repeated once it may have
// reached the platform. Waits grow exponentially with jitter; Retry-After is
// honoured but clamped to [RetryPolicy.MaxWait], and no retry is attempted
// that the context's deadline would cut short.
//
// Two features retry beyond [RetryPolicy.MaxRetries]: a [Writer] keeps a
// batch refused for a passing reason buffered (or spooled) and sends it
// again, with the same waits, until it is written or Close gives up; [Client.Subscribe] reconnects with the same
// waits as often as [WithReconnect] allows (by default, forever).
//
// # Times
//
// The platform keeps times in UTC with millisecond precision. Datetimes are
// sent in its documented form YYYYMMDDHHmmss when they have whole seconds,
// else in ISO 8601 with milliseconds; [ParseTime] reads every form the
// platform uses, and [FormatTime] writes the documented one.
//
// # Writes
//
// [Client.Write] sends a batch of values, each with an optional [Geo] and its
// own Datetime, split into requests of at most 100 values. A [Writer]
// batches values in the background for devices and gateways: a bounded
// buffer, or with [WithSpool] a crash-safe spool on disk; flushes by size and
// interval; retries, with ambiguous outcomes verified by reading back, so
// that values with a Datetime are stored exactly once; a Close that reports
// every value it could not send; and [Writer.Stats]. Any failure to write is
// a [*WriteError] naming exactly the values not written; [FailedValues]
// collects them from joined errors.
//
// # Reading history
//
// The platform returns at most 1000 values per request, newest first.
// [Client.Read] fetches one page and returns a cursor to resume from, even
// in another process; [Client.Values] is an iterator over a whole window of
// history that follows those cursors and yields every stored value exactly
// once, whatever the platform does with values that share a timestamp:
//
//	for v, err := range c.Values(ctx, "temperature", &thethings.ReadOptions{Start: since}) {
//		if err != nil { return err }
//		f, _ := v.Float64()
//		...
//	}
//
// # Realtime
//
// [Client.Subscribe] follows the thing's realtime channel as an iterator of
// [Message]s. It detects dead links with an idle watchdog and reconnects
// with jittered backoff. The channel itself cannot replay what was written
// while the link was down; with [WithBackfill] the subscription reads those
// values of the named keys from history and delivers them before going on
// live. Backfill covers stored, ordinary keys (not magic resources), and
// relies on the platform's clock and this machine's agreeing within two
// seconds (see [WithBackfill]). Leaving the loop closes the connection.
//
// Package mqtt (github.com/thethings-go/thethings/mqtt) speaks the
// platform's MQTT device API with the same [Value] and [Message] types, for
// devices that keep one connection open.
//
// # Testing
//
// Package thethingstest (github.com/thethings-go/thethings/thethingstest) is
// an in-memory fake of the platform, REST and MQTT, with faults to inject and
// ground truth to assert on; every example of this package runs against it.
//
// # Magic resources
//
// [Client.Location], [Client.SetLocation], [Client.Settings],
// [Client.Setting], [Client.SetSettings] and [Client.SetSetting] read and
// write the $geo and $settings magic resources, one request each, since the
// platform processes them asynchronously: a read right after a write may
// still see the former state.
//
// # Security
//
// The thing token is a secret, and the API carries it in the URL path. The SDK
// never puts it in an error, a log line or the String form of a value: paths
// read "/v2/things/***". Tokens and keys are path-escaped, redirects are not
// followed, and plain http is used only when the base URL given to
// [WithBaseURL] says so.
package thethings

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/thethings-go/thethings/internal/transport"
)

// DefaultBaseURL is the platform's device API.
const DefaultBaseURL = "https://api.thethings.io/v2/"

// Version is this SDK's version, sent in the User-Agent header.
const Version = "0.2.0"

const (
	defaultMaxRetries = 3
	defaultMinWait    = 500 * time.Millisecond
	defaultMaxWait    = 10 * time.Second
	defaultTimeout    = 30 * time.Second
	maxErrorBody      = 64 << 10
	redacted          = "***"
)

// RetryPolicy bounds automatic retries. A zero field means that field's
// default, so RetryPolicy{RetryWrites: true} is the default policy with
// write retries; [NoRetries] turns retries off.
type RetryPolicy struct {
	MaxRetries  int           // retries after the first attempt, up to 100; 0 means 3, negative means none
	MinWait     time.Duration // first wait before jitter; 0 means 500ms
	MaxWait     time.Duration // cap for every wait and for Retry-After; 0 means 10s
	RetryWrites bool          // also retry writes whose outcome is unknown (may duplicate values)
}

// NoRetries is the policy of a client that sends every request once.
var NoRetries = RetryPolicy{MaxRetries: -1}

// withDefaults fills the zero fields of p and checks the others.
func (p RetryPolicy) withDefaults() (RetryPolicy, error) {
	switch {
	case p.MaxRetries == 0:
		p.MaxRetries = defaultMaxRetries
	case p.MaxRetries < 0:
		p.MaxRetries = 0
	case p.MaxRetries > 100:
		return p, optionError("MaxRetries %d above 100", p.MaxRetries)
	}
	if p.MinWait < 0 || p.MaxWait < 0 {
		return p, optionError("negative retry wait")
	}
	if p.MinWait == 0 {
		p.MinWait = defaultMinWait
		if p.MaxWait > 0 {
			p.MinWait = min(defaultMinWait, p.MaxWait)
		}
	}
	if p.MaxWait == 0 {
		p.MaxWait = max(defaultMaxWait, p.MinWait)
	}
	if p.MaxWait < p.MinWait {
		return p, optionError("MaxWait %s below MinWait %s", p.MaxWait, p.MinWait)
	}
	return p, nil
}

// Option configures a Client. An invalid option makes NewClient or Activate
// fail with an error matching ErrInvalidOption; options never panic.
type Option func(*config) error

type config struct {
	base      *url.URL
	http      *http.Client
	stream    *http.Client
	retry     RetryPolicy
	userAgent string
	logger    *slog.Logger
	now       func() time.Time // the device's clock
	// platformClock: a Writer stamps on the platform's clock always.
	platformClock bool
}

// WithBaseURL sets the API's base URL, "https://api.thethings.io/v2/" by
// default. A URL without a path gets "/v2/". Only http and https are
// accepted, and http only when given here.
func WithBaseURL(rawURL string) Option {
	return func(c *config) error {
		u, err := parseBaseURL(rawURL)
		if err != nil {
			return err
		}
		c.base = u
		return nil
	}
}

func parseBaseURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, optionError("base URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, optionError("base URL %q: scheme must be http or https", rawURL)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, optionError("base URL %q: want scheme://host[:port][/path/] without user, query or fragment", rawURL)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v2/"
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	u.RawPath = ""
	return u, nil
}

// WithHTTPClient sets the client for unary calls (activation, writes,
// reads). It is copied, so many Clients may share one; its Timeout bounds one
// attempt. Redirects are never followed: the copy answers them as errors.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error {
		if hc == nil {
			return optionError("nil HTTP client")
		}
		c.http = hc
		return nil
	}
}

// WithStreamHTTPClient sets the client for Subscribe. It must have no
// Timeout: a whole-request timeout would cut every healthy stream. Dead
// streams are found by the idle watchdog instead.
func WithStreamHTTPClient(hc *http.Client) Option {
	return func(c *config) error {
		if hc == nil {
			return optionError("nil stream HTTP client")
		}
		if hc.Timeout != 0 {
			return optionError("stream HTTP client has Timeout %s; it would cut healthy streams", hc.Timeout)
		}
		c.stream = hc
		return nil
	}
}

// WithRetry sets the retry policy. See RetryPolicy for the defaults.
func WithRetry(p RetryPolicy) Option {
	return func(c *config) error {
		p, err := p.withDefaults()
		if err != nil {
			return err
		}
		c.retry = p
		return nil
	}
}

// WithUserAgent sets the User-Agent header; the SDK appends its own name.
func WithUserAgent(ua string) Option {
	return func(c *config) error {
		ua = strings.TrimSpace(ua)
		if ua == "" || strings.ContainsAny(ua, "\r\n") {
			return optionError("user agent must be one non-empty line")
		}
		c.userAgent = ua
		return nil
	}
}

// WithLogger logs retries (Debug) and reconnects (Info) to l. By default the
// SDK writes nothing anywhere. The thing token never reaches the logger.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		c.logger = l
		return nil
	}
}

// WithClock sets the device's clock, time.Now by default. A [Writer] stamps
// values added without a Datetime with it, unless it reads earlier than
// 2025-01-01 (a board that has no battery-backed clock and has not synced
// it yet): those values are stamped on the platform's clock instead (see
// [WithPlatformClock]). Tests use it to play a device whose clock is wrong.
// A nil now is an error.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return optionError("nil clock")
		}
		c.now = now
		return nil
	}
}

// WithPlatformClock makes a [Writer] stamp every value added without a
// Datetime on the platform's clock, even when the device's clock looks
// right. The client learns the platform's clock from the Date header of
// every answer, refined to the millisecond by [Client.ServerTime] when a
// Writer needs it; a value's age is measured on the monotonic clock, so
// neither a wrong nor a stepped device clock moves its stamp. Values added
// before the platform ever answered wait, in the Writer's buffer or spool,
// and are stamped once it does, before they are sent.
func WithPlatformClock() Option {
	return func(c *config) error {
		c.platformClock = true
		return nil
	}
}

// Client talks to the platform on behalf of one thing. It is immutable and
// safe for concurrent use.
type Client struct {
	// The token and what removes it from text are closures: fmt prints a
	// func as an address under every verb, so no printed form of a Client,
	// of a Client value or of a struct holding one reaches the token.
	token     func() string
	thingID   string
	base      *url.URL
	tr        *transport.Transport
	stream    *http.Client
	retry     RetryPolicy
	userAgent string
	logger    *slog.Logger
	redactor  func(string) string
	now       func() time.Time // the device's clock (WithClock)
	// platformAlways: a Writer stamps on the platform's clock always.
	platformAlways bool
	clock          *platformClock // learned from every answer
}

// NewClient returns a client for the thing with the given token. It does no
// I/O. An empty token is ErrNoToken; a token holding a space or a control
// character (a trailing newline from a file) is ErrInvalidToken.
func NewClient(thingToken string, opts ...Option) (*Client, error) {
	if err := checkToken(thingToken); err != nil {
		return nil, err
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return newClient(thingToken, "", cfg), nil
}

// checkToken refuses an empty token, and one that holds a space or a
// control character. The error does not show the token.
func checkToken(token string) error {
	if token == "" {
		return ErrNoToken
	}
	for _, r := range token {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return errorf("thethings: thing token holds a space, a control character or invalid UTF-8 at rune %d (%q): %w",
				utf8.RuneCountInString(token[:strings.IndexRune(token, r)]), r, ErrInvalidToken)
		}
	}
	return nil
}

// checkContext refuses a nil context, which would panic later.
func checkContext(ctx context.Context) error {
	if ctx == nil {
		return optionError("nil context.Context (use context.Background())")
	}
	return nil
}

func newConfig(opts []Option) (*config, error) {
	cfg := &config{}
	cfg.retry, _ = RetryPolicy{}.withDefaults()
	for _, o := range opts {
		if o == nil {
			return nil, optionError("nil option")
		}
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	if cfg.base == nil {
		cfg.base, _ = parseBaseURL(DefaultBaseURL)
	}
	if cfg.http == nil {
		cfg.http = cleanhttp.DefaultPooledClient()
		cfg.http.Timeout = defaultTimeout
		// A batch of values is often larger than the default 4 KiB buffer:
		// one write per request instead of several.
		cfg.http.Transport.(*http.Transport).WriteBufferSize = 64 << 10
	} else {
		hc := *cfg.http
		cfg.http = &hc
	}
	cfg.http.CheckRedirect = noRedirects
	if cfg.stream == nil {
		tr := cleanhttp.DefaultPooledTransport()
		tr.ResponseHeaderTimeout = defaultTimeout
		// A subscription sends one small GET and reads small frames;
		// smaller connection buffers keep thousands of them cheap.
		tr.WriteBufferSize = 1 << 10
		tr.ReadBufferSize = 1 << 10
		cfg.stream = &http.Client{Transport: tr}
	} else {
		hc := *cfg.stream
		cfg.stream = &hc
	}
	cfg.stream.CheckRedirect = noRedirects
	return cfg, nil
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func newClient(token, thingID string, cfg *config) *Client {
	ua := "thethings-go/" + Version
	if cfg.userAgent != "" {
		ua = cfg.userAgent + " " + ua
	}
	c := &Client{
		token:          func() string { return token },
		thingID:        thingID,
		base:           cfg.base,
		stream:         cfg.stream,
		retry:          cfg.retry,
		userAgent:      ua,
		logger:         cfg.logger,
		now:            cfg.now,
		platformAlways: cfg.platformClock,
		clock:          &platformClock{},
	}
	if c.now == nil {
		c.now = time.Now
	}
	if token != "" {
		c.redactor = strings.NewReplacer(token, redacted, url.PathEscape(token), redacted, url.QueryEscape(token), redacted).Replace
	}
	c.tr = transport.New(cfg.http, transport.Policy{
		MaxRetries:  cfg.retry.MaxRetries,
		MinWait:     cfg.retry.MinWait,
		MaxWait:     cfg.retry.MaxWait,
		RetryWrites: cfg.retry.RetryWrites,
	}, cfg.logger, c.redact)
	return c
}

// redact removes the thing token from s.
func (c *Client) redact(s string) string {
	if c.redactor == nil {
		return s
	}
	return c.redactor(s)
}

// ThingToken returns the thing's token. After Activate, persist it: the
// activation code cannot be used again.
func (c *Client) ThingToken() string { return c.token() }

// ThingID returns the thing's id as reported by Activate, or "" when the
// client was made by NewClient.
func (c *Client) ThingID() string { return c.thingID }

// String describes the client without its token.
func (c *Client) String() string {
	return fmt.Sprintf("thethings.Client{base: %s, thing: %s}", c.base, redacted)
}

// GoString is String, so that %#v does not print the token either.
func (c *Client) GoString() string { return c.String() }

// Format prints String under every verb, so that verbs which bypass
// String (%d, %x) do not walk the Client's fields.
func (c *Client) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", c.String())
		return
	}
	_, _ = io.WriteString(f, c.String())
}

// LogValue keeps the token out of structured logs.
func (c *Client) LogValue() slog.Value { return slog.StringValue(c.String()) }

// route is a request target relative to the base URL, with the same target
// as it may be shown: thing token redacted.
type route struct {
	path     string
	redacted string
}

// escapeSegment path-escapes one segment, so that no token or key can
// reach another route ("/", "?", "#", and "." or ".." segments).
func escapeSegment(s string) string {
	e := url.PathEscape(s)
	if e == "." || e == ".." {
		e = strings.ReplaceAll(e, ".", "%2E")
	}
	return e
}

// thingRoute is things/{token}[/suffix...], each suffix segment escaped.
func (c *Client) thingRoute(segments ...string) route {
	p := "things/" + escapeSegment(c.token())
	r := "things/" + redacted
	for _, s := range segments {
		p += "/" + escapeSegment(s)
		r += "/" + escapeSegment(s)
	}
	return route{path: p, redacted: r}
}

func (c *Client) displayPath(rt route) string {
	p := c.base.Path + rt.redacted
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	return p
}

// causeError is an error whose text was redacted and cut, while its causes
// stay reachable for errors.Is and errors.As.
type causeError struct {
	msg  string
	errs []error
}

func (e *causeError) Error() string   { return e.msg }
func (e *causeError) Unwrap() []error { return e.errs }

// maxMessage bounds the platform's message kept in an APIError.
const maxMessage = 512

// maxQuote bounds how much of a bad input an error message quotes.
const maxQuote = 64

// shorten cuts s to its first maxQuote bytes (on a rune boundary), marking
// the cut, so that no answer, however large, makes a large error message.
func shorten(s string) string { return cutText(s, maxQuote) }

// cutText cuts s to at most n bytes on a rune boundary, marking the cut.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
