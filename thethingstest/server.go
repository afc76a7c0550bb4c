package thethingstest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Option configures a Server made by New or NewServer. An Option that
// returns an error (an invalid setting, such as a negative size) makes New
// fail with that error and NewServer fail the test.
type Option func(*config) error

type config struct {
	addr             string
	tokens           []string
	tokensSet        bool // WithThingTokens was given, even with no token
	codes            []ActivationCode
	endInclusive     bool
	legacyWrite      bool
	streamDatetime   bool
	now              func() time.Time
	maxBody          int64
	defaultKeepAlive time.Duration
	faults           Faults
	control          bool
	mqtt             bool
	functions        map[string]Function
	firmwareFaults   FirmwareFaults
	dataDir          string
}

// ActivationCode is an activation code the emulator accepts once on
// POST /v2/things.
type ActivationCode struct {
	// Code is the activation code a device sends as "activationCode".
	Code string
	// ProductID binds the code to a product: "" activates with or without a
	// productId in the request; otherwise a productId given in the request
	// must equal it (a request without productId is still accepted, as the
	// platform does when an account has one product).
	ProductID string
}

// WithAddr sets the address Start listens on (default "127.0.0.1:0").
func WithAddr(addr string) Option {
	return func(c *config) error { c.addr = addr; return nil }
}

// WithThingTokens seeds things that are already activated, in this order
// (Tokens lists them first). Without this option the Server makes up one
// random token; WithThingTokens() with no token starts with no thing at all.
// An empty token is an error.
func WithThingTokens(tokens ...string) Option {
	return func(c *config) error {
		for _, t := range tokens {
			if t == "" {
				return errors.New("thethingstest: WithThingTokens: empty token")
			}
		}
		c.tokens = append(c.tokens, tokens...)
		c.tokensSet = true
		return nil
	}
}

// WithActivationCodes seeds activation codes. An empty Code is an error.
func WithActivationCodes(codes ...ActivationCode) Option {
	return func(c *config) error {
		for _, ac := range codes {
			if ac.Code == "" {
				return errors.New("thethingstest: WithActivationCodes: empty code")
			}
		}
		c.codes = append(c.codes, codes...)
		return nil
	}
}

// WithEndDateInclusive makes the read endDate bound inclusive. The default
// (false) is exclusive: the platform's own 2300-values pagination example
// shows the next page starting strictly before the previous page's last
// datetime, which only holds for an exclusive bound. Older client code
// (the Python library) reads as if the bound were inclusive; switch it on to
// test that a client de-duplicates page boundaries.
func WithEndDateInclusive(b bool) Option {
	return func(c *config) error { c.endInclusive = b; return nil }
}

// WithLegacyWriteResponse makes a successful write answer
// 201 {"status":"Success","message":"Created"}, the body printed in the
// platform's device-development guide. The default is
// 201 {"status":"created"}, which is what the platform's other documents,
// its CoAP replies and client test suites show.
func WithLegacyWriteResponse(b bool) Option {
	return func(c *config) error { c.legacyWrite = b; return nil }
}

// WithStreamItemFields controls the fields of subscription stream items.
// With true (the default) each item carries "datetime" and, when written
// with one, "geo" besides "key" and "value"; with false items carry only
// "key" and "value", which is all that published client code relies on.
func WithStreamItemFields(datetime bool) Option {
	return func(c *config) error { c.streamDatetime = datetime; return nil }
}

// WithClock sets the clock used for values written without datetime and for
// /v2/utils/date (default time.Now). A nil clock is an error.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return errors.New("thethingstest: WithClock: nil clock")
		}
		c.now = now
		return nil
	}
}

// maxHeaderBytes bounds a request's line and headers (net/http's default
// is 1 MiB); larger ones are answered 431.
const maxHeaderBytes = 64 << 10

// WithMaxBodyBytes sets the largest accepted request body (default 1 MiB);
// larger bodies are answered 413. It bounds MQTT publishes too: a packet
// larger than n plus room for its topic is refused before it is read, and
// its connection closed. n must be positive.
func WithMaxBodyBytes(n int64) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("thethingstest: WithMaxBodyBytes(%d): must be positive", n)
		}
		c.maxBody = n
		return nil
	}
}

// WithDefaultKeepAlive sets the keep-alive interval of subscriptions whose
// request has no keepAlive parameter (default 60s, the platform's default).
// d must be positive.
func WithDefaultKeepAlive(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("thethingstest: WithDefaultKeepAlive(%v): must be positive", d)
		}
		c.defaultKeepAlive = d
		return nil
	}
}

// WithFaults sets the initial fault injection; see Faults. Invalid faults
// (see Faults.Validate) are an error.
func WithFaults(f Faults) Option {
	return func(c *config) error {
		if err := f.Validate(); err != nil {
			return err
		}
		c.faults = f
		return nil
	}
}

// Route is a kind of request the Server counts; see Server.Requests.
type Route string

// The routes counted by Server.Requests.
const (
	// RouteRoot is GET /v2/.
	RouteRoot Route = "root"
	// RouteActivate is POST /v2/things.
	RouteActivate Route = "activate"
	// RouteWrite is POST /v2/things/{token}.
	RouteWrite Route = "write"
	// RouteRead is GET /v2/things/{token}/resources/{key}.
	RouteRead Route = "read"
	// RouteSubscribe is GET /v2/things/{token}.
	RouteSubscribe Route = "subscribe"
	// RouteDate is GET /v2/utils/date.
	RouteDate Route = "date"
	// RouteOther counts unknown paths and wrong methods.
	RouteOther Route = "other"
)

// Routes returns every Route, in a fixed order.
func Routes() []Route {
	return []Route{RouteRoot, RouteActivate, RouteWrite, RouteRead, RouteSubscribe, RouteDate,
		RouteResources, RouteFirmwares, RouteFirmwareDownload, RouteFunction, RouteOther}
}

// Server is a fake of the thethings.iO device REST API v2, in memory unless
// WithDataDir.
// All methods are safe for concurrent use.
//
// Served by Start or Serve, each answer leaves in one write, headers and
// body together, and each subscription frame as one HTTP chunk in one
// write, as a Node server sends them: clients that parse each network read
// as one JSON document (the official JavaScript SDK does) work against it.
type Server struct {
	cfg config

	mu     sync.RWMutex // guards things, order and codes
	things map[string]*thing
	order  []string // tokens in the order they became known
	codes  map[string]ActivationCode

	faultsMu sync.RWMutex
	faults   Faults

	nonStream atomic.Int64 // counter of non-stream requests (503/429 faults)
	writes    atomic.Int64 // counter of write requests (DropEvery)
	routes    map[Route]*atomic.Int64
	dups      atomic.Int64
	openSubs  atomic.Int64
	seq       atomic.Uint64 // insertion sequence for stored records

	fw firmwareStore // firmwares and functions (firmware.go)

	handler http.Handler
	mq      *mqttBroker // nil without WithMQTT

	journal     *journal   // nil without WithDataDir
	logMu       sync.Mutex // orders the records of changes as they are applied
	loggedCodes map[string]struct{}

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	srvMu     sync.Mutex
	srv       *http.Server
	ln        net.Listener
	wg        sync.WaitGroup // goroutines started by the Server
	closed    bool
}

// NewServer returns a Server started on 127.0.0.1 at a free port and closed
// when tb's test ends (tb.Cleanup). An invalid option or a failure to listen
// fails the test with tb.Fatal.
func NewServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s, err := New(opts...)
	if err != nil {
		tb.Fatal(err)
		return nil // for a testing.TB whose Fatal returns
	}
	tb.Cleanup(func() { _ = s.Close() })
	if err := s.Start(); err != nil {
		tb.Fatal(err)
		return nil
	}
	return s
}

// New returns a Server configured by opts, or the first option's error. It
// is not listening yet: call Start (then Close) or Serve, or mount Handler
// yourself.
func New(opts ...Option) (*Server, error) {
	cfg := config{
		streamDatetime:   true,
		now:              time.Now,
		maxBody:          1 << 20,
		defaultKeepAlive: 60 * time.Second,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	s := &Server{
		cfg:    cfg,
		things: make(map[string]*thing),
		codes:  make(map[string]ActivationCode),
		faults: cfg.faults,
		routes: make(map[Route]*atomic.Int64),
		done:   make(chan struct{}),
	}
	for _, r := range Routes() {
		s.routes[r] = new(atomic.Int64)
	}
	s.fw.functions, s.fw.faults = cfg.functions, cfg.firmwareFaults
	if err := s.seed(); err != nil {
		if s.journal != nil {
			_ = s.journal.close()
		}
		return nil, err
	}
	s.handler = oneWrite(s.recoverer(http.HandlerFunc(s.route)))
	if cfg.mqtt {
		s.mq = &mqttBroker{}
	}
	return s, nil
}

// seed loads the data directory, if any, then adds the things and codes
// of the options that it does not already hold. A code the data
// directory knows, even used, is not added again.
func (s *Server) seed() error {
	if s.cfg.dataDir != "" {
		s.loggedCodes = map[string]struct{}{}
		j, err := openJournal(s.cfg.dataDir, s.replay)
		if err != nil {
			return err
		}
		s.journal = j
	}
	if !s.cfg.tokensSet && len(s.order) == 0 {
		if err := s.addThing(randomID()); err != nil {
			return err
		}
	}
	for _, t := range s.cfg.tokens {
		if err := s.addThing(t); err != nil {
			return err
		}
	}
	for _, c := range s.cfg.codes {
		if _, known := s.loggedCodes[c.Code]; known {
			continue
		}
		if err := s.addActivationCode(c); err != nil {
			return err
		}
	}
	s.loggedCodes = nil
	return nil
}

// Handler returns the Server's http.Handler, for mounting on your own
// server (for example httptest.NewServer). Subscription streams served
// through it still end when Close is called. Answers then leave as that
// server writes them: only Start and Serve send each answer in one write
// (see Server).
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on the configured address (127.0.0.1:0 unless WithAddr) and
// serves in the background until Close.
func (s *Server) Start() error {
	addr := s.cfg.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if err := s.startMQTT(); err != nil {
		ln.Close()
		return err
	}
	srv, err := s.setListener(ln, true)
	if err != nil {
		ln.Close()
		return err
	}
	go func() {
		defer s.wg.Done()
		_ = srv.Serve(heldListener{ln})
	}()
	return nil
}

// Serve serves on ln until Close; it blocks. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.startMQTT(); err != nil {
		return err
	}
	srv, err := s.setListener(ln, false)
	if err != nil {
		return err
	}
	err = srv.Serve(heldListener{ln})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// setListener records ln; with track the serving goroutine is counted in
// s.wg (under srvMu, so Close cannot miss it).
func (s *Server) setListener(ln net.Listener, track bool) (*http.Server, error) {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.closed {
		return nil, http.ErrServerClosed
	}
	if s.srv != nil {
		return nil, errors.New("thethingstest: already serving")
	}
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnContext:       connContext,
	}
	s.ln = ln
	if track {
		s.wg.Add(1)
	}
	return s.srv, nil
}

// URL returns the base URL including "/v2/", for example
// "http://127.0.0.1:41234/v2/". It is "" before Start or Serve.
func (s *Server) URL() string {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String() + "/v2/"
}

// Close stops the listener, ends all open subscription streams and waits for
// every goroutine the Server started. It is idempotent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.srvMu.Lock()
		s.closed = true
		srv := s.srv
		s.srvMu.Unlock()
		close(s.done)
		s.stopMQTT()
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if e := srv.Shutdown(ctx); e != nil {
				err = srv.Close()
			}
			cancel()
		}
		s.wg.Wait()
		if s.journal != nil {
			if e := s.journal.close(); err == nil {
				err = e
			}
		}
	})
	return err
}

// AddThing registers an activated thing with the given token. Adding a
// known token is a no-op. With WithDataDir it is kept there; should the
// disk fail, the directory is unusable and writes are answered 500 from
// then on.
func (s *Server) AddThing(token string) { _ = s.addThing(token) }

func (s *Server) addThing(token string) error {
	if s.thing(token) != nil {
		return nil
	}
	return s.commit("thing", func() []byte { return mustJSON(thingRecord{token}) }, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.addThingLocked(token)
	})
}

func (s *Server) addThingLocked(token string) {
	if _, ok := s.things[token]; !ok {
		s.things[token] = newThing()
		s.order = append(s.order, token)
	}
}

// Tokens returns the tokens of all known things in the order they became
// known: the seeded ones first (WithThingTokens, or the one made up without
// it), then those added with AddThing or activated over HTTP. Tokens()[0]
// is the token to give a client in a test.
func (s *Server) Tokens() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Clone(s.order)
}

func (s *Server) thing(token string) *thing {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.things[token]
}

// randomID returns 43 random characters of the URL-safe base64 alphabet.
func randomID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Requests returns how many requests were routed to route (RouteOther
// counts unknown paths and wrong methods; FunctionRoute(name) the calls
// that reached one function). An unknown Route gives 0.
func (s *Server) Requests(route Route) int {
	if c, ok := s.routes[route]; ok {
		return int(c.Load())
	}
	if name, ok := strings.CutPrefix(string(route), string(FunctionRoute(""))); ok {
		return int(s.fw.counter(name).Load())
	}
	return 0
}

// Duplicates returns how many stored values equalled an already stored one:
// same token, key, datetime (ms) and compact JSON value.
func (s *Server) Duplicates() int { return int(s.dups.Load()) }

// OpenSubscriptions returns the number of subscription streams currently open.
func (s *Server) OpenSubscriptions() int { return int(s.openSubs.Load()) }

// SetFaults replaces the fault injection settings; safe at any time, from
// any goroutine, also while requests are served. Fields that Validate
// refuses do what is nearest: a negative count or duration is off, an
// unknown StoreThenFailStatus is 502.
func (s *Server) SetFaults(f Faults) {
	s.faultsMu.Lock()
	s.faults = f
	s.faultsMu.Unlock()
}

// Faults returns the current fault injection settings.
func (s *Server) Faults() Faults {
	s.faultsMu.RLock()
	defer s.faultsMu.RUnlock()
	return s.faults
}

func (s *Server) now() time.Time { return s.cfg.now() }
