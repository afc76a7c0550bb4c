package emulator

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Option configures a Server created by New.
type Option func(*config)

type config struct {
	addr             string
	tokens           []string
	codes            []ActivationCode
	endInclusive     bool
	legacyWrite      bool
	streamDatetime   bool
	now              func() time.Time
	maxBody          int64
	defaultKeepAlive time.Duration
	faults           Faults
	mqtt             bool
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
func WithAddr(addr string) Option { return func(c *config) { c.addr = addr } }

// WithThingTokens seeds things that are already activated.
func WithThingTokens(tokens ...string) Option {
	return func(c *config) { c.tokens = append(c.tokens, tokens...) }
}

// WithActivationCodes seeds activation codes.
func WithActivationCodes(codes ...ActivationCode) Option {
	return func(c *config) { c.codes = append(c.codes, codes...) }
}

// WithEndDateInclusive makes the read endDate bound inclusive. The default
// (false) is exclusive: the platform's own 2300-values pagination example
// shows the next page starting strictly before the previous page's last
// datetime, which only holds for an exclusive bound. Older client code
// (the Python library) reads as if the bound were inclusive; switch it on to
// test that a client de-duplicates page boundaries.
func WithEndDateInclusive(b bool) Option { return func(c *config) { c.endInclusive = b } }

// WithLegacyWriteResponse makes a successful write answer
// 201 {"status":"Success","message":"Created"}, the body printed in the
// platform's device-development guide. The default is
// 201 {"status":"created"}, which is what the platform's other documents,
// its CoAP replies and client test suites show.
func WithLegacyWriteResponse(b bool) Option { return func(c *config) { c.legacyWrite = b } }

// WithStreamItemFields controls the fields of subscription stream items.
// With true (the default) each item carries "datetime" and, when written
// with one, "geo" besides "key" and "value"; with false items carry only
// "key" and "value", which is all that published client code relies on.
func WithStreamItemFields(datetime bool) Option {
	return func(c *config) { c.streamDatetime = datetime }
}

// WithClock sets the clock used for values written without datetime and for
// /v2/utils/date (default time.Now).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithMaxBodyBytes sets the largest accepted request body (default 1 MiB);
// larger bodies are answered 413.
func WithMaxBodyBytes(n int64) Option { return func(c *config) { c.maxBody = n } }

// WithDefaultKeepAlive sets the keep-alive interval of subscriptions whose
// request has no keepAlive parameter (default 60s, the platform's default).
func WithDefaultKeepAlive(d time.Duration) Option {
	return func(c *config) { c.defaultKeepAlive = d }
}

// WithFaults sets the initial fault injection; see Faults.
func WithFaults(f Faults) Option { return func(c *config) { c.faults = f } }

// Route names accepted by Server.Requests.
const (
	// RouteRoot is GET /v2/.
	RouteRoot = "root"
	// RouteActivate is POST /v2/things.
	RouteActivate = "activate"
	// RouteWrite is POST /v2/things/{token}.
	RouteWrite = "write"
	// RouteRead is GET /v2/things/{token}/resources/{key}.
	RouteRead = "read"
	// RouteSubscribe is GET /v2/things/{token}.
	RouteSubscribe = "subscribe"
	// RouteDate is GET /v2/utils/date.
	RouteDate = "date"
	// RouteOther counts unknown paths and wrong methods.
	RouteOther = "other"
)

var routeNames = []string{RouteRoot, RouteActivate, RouteWrite, RouteRead, RouteSubscribe, RouteDate, RouteOther}

// Server is an in-memory emulator of the thethings.iO device REST API v2.
// All methods are safe for concurrent use.
type Server struct {
	cfg config

	mu     sync.RWMutex // guards things and codes
	things map[string]*thing
	codes  map[string]ActivationCode

	faultsMu sync.RWMutex
	faults   Faults

	nonStream atomic.Int64 // counter of non-stream requests (503/429 faults)
	writes    atomic.Int64 // counter of write requests (DropEvery)
	routes    map[string]*atomic.Int64
	dups      atomic.Int64
	openSubs  atomic.Int64
	seq       atomic.Uint64 // insertion sequence for stored records

	handler http.Handler
	mq      *mqttBroker // nil without WithMQTT

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	srvMu     sync.Mutex
	srv       *http.Server
	ln        net.Listener
	wg        sync.WaitGroup // goroutines started by the Server
	closed    bool
}

// New returns a Server configured by opts. It is not listening yet: call
// Start or Serve, or mount Handler yourself.
func New(opts ...Option) *Server {
	cfg := config{
		streamDatetime:   true,
		now:              time.Now,
		maxBody:          1 << 20,
		defaultKeepAlive: 60 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if cfg.maxBody <= 0 {
		cfg.maxBody = 1 << 20
	}
	if cfg.defaultKeepAlive <= 0 {
		cfg.defaultKeepAlive = 60 * time.Second
	}
	s := &Server{
		cfg:    cfg,
		things: make(map[string]*thing),
		codes:  make(map[string]ActivationCode),
		faults: cfg.faults,
		routes: make(map[string]*atomic.Int64, len(routeNames)),
		done:   make(chan struct{}),
	}
	for _, r := range routeNames {
		s.routes[r] = new(atomic.Int64)
	}
	for _, t := range cfg.tokens {
		s.AddThing(t)
	}
	for _, c := range cfg.codes {
		s.AddActivationCode(c)
	}
	s.handler = s.recoverer(http.HandlerFunc(s.route))
	if cfg.mqtt {
		s.mq = &mqttBroker{}
	}
	return s
}

// Handler returns the emulator's http.Handler, for mounting on your own
// server (for example httptest.NewServer). Subscription streams served
// through it still end when Close is called.
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
		_ = srv.Serve(ln)
	}()
	return nil
}

// Serve serves on ln until Close; it blocks. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	srv, err := s.setListener(ln, false)
	if err != nil {
		return err
	}
	err = srv.Serve(ln)
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
		return nil, errors.New("emulator: already serving")
	}
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
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
	})
	return err
}

// AddThing registers an activated thing with the given token. Adding a
// known token is a no-op.
func (s *Server) AddThing(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.things[token]; !ok {
		s.things[token] = newThing()
	}
}

// AddActivationCode registers (or replaces) an activation code.
func (s *Server) AddActivationCode(c ActivationCode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[c.Code] = c
}

// Tokens returns all known thing tokens (seeded and activated), sorted.
func (s *Server) Tokens() []string {
	s.mu.RLock()
	out := make([]string, 0, len(s.things))
	for t := range s.things {
		out = append(out, t)
	}
	s.mu.RUnlock()
	sort.Strings(out)
	return out
}

func (s *Server) thing(token string) *thing {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.things[token]
}

// activate consumes code and returns a new thing token and thing id.
func (s *Server) activate(code, productID string, hasProduct bool) (token, id string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, found := s.codes[code]
	if !found || (hasProduct && c.ProductID != "" && c.ProductID != productID) {
		return "", "", false
	}
	delete(s.codes, code)
	for {
		token = randomID()
		if _, dup := s.things[token]; !dup {
			break
		}
	}
	s.things[token] = newThing()
	return token, randomID(), true
}

// randomID returns 43 random characters of the URL-safe base64 alphabet.
func randomID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Requests returns how many requests were routed to route: "root",
// "activate", "write", "read", "subscribe", "date" or "other" (unknown
// paths and wrong methods). Unknown route names give 0.
func (s *Server) Requests(route string) int {
	if c, ok := s.routes[route]; ok {
		return int(c.Load())
	}
	return 0
}

// Duplicates returns how many stored values equalled an already stored one:
// same token, key, datetime (ms) and compact JSON value.
func (s *Server) Duplicates() int { return int(s.dups.Load()) }

// OpenSubscriptions returns the number of subscription streams currently open.
func (s *Server) OpenSubscriptions() int { return int(s.openSubs.Load()) }

// SetFaults replaces the fault injection settings; safe at any time.
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
