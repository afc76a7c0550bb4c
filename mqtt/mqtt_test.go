package mqtt_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/mqtt"
	"github.com/thethings-go/thethings/thethingstest"
)

func TestWriteThenReadOverREST(t *testing.T) {
	srv, c, rest := setup(t)
	at := time.Date(2026, 3, 4, 5, 6, 7, 890e6, time.UTC)
	err := c.Write(testkit.Ctx(t, 0), []thethings.Value{
		{Key: "temp", Value: 21.5, Geo: &thethings.Geo{Lat: 41.39, Long: 2.15}, Datetime: at},
		{Key: "temp", Value: 22, Datetime: at.Add(time.Second)},
		{Key: "door", Value: "open"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// QoS 1: the broker acknowledged after the server stored the values.
	page, err := rest.Read(testkit.Ctx(t, 0), "temp", &thethings.ReadOptions{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Values) != 2 {
		t.Fatalf("read %d values, want 2: %+v", len(page.Values), page.Values)
	}
	old := page.Values[1]
	if f, _ := old.Float64(); f != 21.5 || !old.Datetime.Equal(at) || old.Geo == nil || *old.Geo != (thethings.Geo{Lat: 41.39, Long: 2.15}) {
		t.Fatalf("read back %+v (geo %v), want 21.5 at %v with geo", old, old.Geo, at)
	}
	if got := srv.StoredCount(token, "door"); got != 1 {
		t.Fatalf("door stored %d times", got)
	}
}

func TestWriteQoS0(t *testing.T) {
	srv, c, _ := setup(t, mqtt.WithQoS(0))
	if err := c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "n", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	// No acknowledgement: the value arrives when it arrives.
	testkit.Eventually(t, "stored", func() bool { return srv.StoredCount(token, "n") == 1 })
}

func TestWriteSplitsBatches(t *testing.T) {
	srv, c, _ := setup(t)
	values := make([]thethings.Value, 250)
	for i := range values {
		values[i] = thethings.Value{Key: "n", Value: i, Datetime: time.UnixMilli(int64(1e12 + i)).UTC()}
	}
	if err := c.Write(testkit.Ctx(t, 0), values); err != nil {
		t.Fatal(err)
	}
	if got := srv.StoredCount(token, "n"); got != 250 {
		t.Fatalf("stored %d, want 250", got)
	}
}

func TestSubscribeGetsRESTAndMQTTWrites(t *testing.T) {
	srv, c, rest := setup(t)
	receive := subscribe(t, c.Subscribe)
	if !testkit.Eventually(t, "subscribed", func() bool { return srv.OpenSubscriptions() == 1 }) {
		return
	}

	if err := rest.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "led", Value: "1"}, {Key: "x", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	m := receive()
	if len(m.Values) != 2 || m.Values[0].Key != "led" || m.Values[0].Value != "1" || m.Values[1].Key != "x" {
		t.Fatalf("REST write arrived as %+v", m)
	}

	other, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(srv.MQTTURL()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := other.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "temp", Value: 19.25, Datetime: at, Geo: &thethings.Geo{Lat: 1, Long: 2}}}); err != nil {
		t.Fatal(err)
	}
	m = receive()
	if len(m.Values) != 1 || m.Values[0].Key != "temp" || !m.Values[0].Datetime.Equal(at) || m.Values[0].Geo == nil {
		t.Fatalf("MQTT write arrived as %+v", m)
	}
	if f, err := m.Values[0].Float64(); err != nil || f != 19.25 {
		t.Fatalf("value %v, %v", f, err)
	}
}

func TestMQTTWriteReachesRESTSubscribers(t *testing.T) {
	srv, c, rest := setup(t)
	receive := subscribe(t, rest.Subscribe)
	if !testkit.Eventually(t, "REST subscription open", func() bool { return srv.OpenSubscriptions() == 1 }) {
		return
	}
	if err := c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "k", Value: true}}); err != nil {
		t.Fatal(err)
	}
	m := receive()
	if len(m.Values) != 1 || m.Values[0].Key != "k" || m.Values[0].Value != true {
		t.Fatalf("got %+v", m)
	}
}

func TestPublishToUnknownThingIsDropped(t *testing.T) {
	srv, _, _ := setup(t)
	c, err := mqtt.Dial(testkit.Ctx(t, 0), "not-a-thing", mqtt.WithBroker(srv.MQTTURL()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "k", Value: 1}}); err != nil {
		t.Fatal(err) // the broker acknowledges: QoS 1 is not a read-back
	}
	if got := srv.StoredCount("not-a-thing", "k"); got != 0 {
		t.Fatalf("stored %d values for an unknown thing", got)
	}
	for _, tok := range srv.Tokens() {
		if tok == "not-a-thing" {
			t.Fatal("a publish created a thing")
		}
	}
}

func TestActivate(t *testing.T) {
	srv, _, _ := setup(t)
	srv.AddActivationCode(thethingstest.ActivationCode{Code: "CODE-1"})
	url := srv.MQTTURL()
	c, err := mqtt.Activate(testkit.Ctx(t, 0), "CODE-1", mqtt.WithBroker(url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tok := c.ThingToken()
	if known := srv.Tokens(); tok == "" || tok == token || len(known) != 2 || !slices.Contains(known, tok) {
		t.Fatalf("token %q, server knows %v: want %q and the new thing's", tok, known, token)
	}
	if err := c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "hello", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if srv.StoredCount(tok, "hello") != 1 {
		t.Fatal("the activated client's write was not stored")
	}

	// The code is spent; another never existed.
	for _, code := range []string{"CODE-1", "NO-SUCH-CODE"} {
		_, err := mqtt.Activate(testkit.Ctx(t, 0), code, mqtt.WithBroker(url))
		if !errors.Is(err, thethings.ErrActivationCodeNotFound) {
			t.Fatalf("Activate(%q) = %v, want ErrActivationCodeNotFound", code, err)
		}
		if !strings.HasPrefix(err.Error(), "thethings: ") || strings.Count(err.Error(), "thethings:") != 1 {
			t.Fatalf("error text %q", err)
		}
	}
}

func TestReconnectAfterBrokerRestart(t *testing.T) {
	var logs syncBuffer
	srv, c, rest := setup(t, mqtt.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	receive := subscribe(t, c.Subscribe)
	if !testkit.Eventually(t, "subscribed", func() bool { return srv.OpenSubscriptions() == 1 }) {
		return
	}

	for round := range 2 {
		if err := srv.RestartMQTT(); err != nil {
			t.Fatal(err)
		}
		// The broker forgot every subscription; the client restores its own.
		if !testkit.Eventually(t, "subscribed again", func() bool { return srv.OpenSubscriptions() == 1 }) {
			return
		}
		if err := rest.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "round", Value: round}}); err != nil {
			t.Fatal(err)
		}
		m := receive()
		if len(m.Values) != 1 || m.Values[0].Key != "round" {
			t.Fatalf("after restart %d: %+v", round, m)
		}
		if err := c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "after", Value: round}}); err != nil {
			t.Fatal(err)
		}
		if got := receive(); got.Values[0].Key != "after" {
			t.Fatalf("own write after restart arrived as %+v", got)
		}
	}
	if !strings.Contains(logs.String(), "reconnected") {
		t.Fatalf("no reconnect logged:\n%s", logs.String())
	}
}

func TestWriteWaitsForTheConnection(t *testing.T) {
	var logs syncBuffer
	srv, c, _ := setup(t, mqtt.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err := srv.RestartMQTT(); err != nil {
		t.Fatal(err)
	}
	// Once the client saw the loss, a write waits for the new connection
	// and goes through. (Before, it may go out on the dead connection and
	// come back with its outcome unknown, as Write documents.)
	if !testkit.Eventually(t, "the loss seen", func() bool { return strings.Contains(logs.String(), "connection lost") }) {
		return
	}
	if err := c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "k", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if srv.StoredCount(token, "k") != 1 {
		t.Fatal("not stored")
	}
}

func TestLastWill(t *testing.T) {
	will := mqtt.WithWill(thethings.Value{Key: "status", Value: "offline"})
	srv, _, _ := setup(t, will)
	// A broker restart ends the connection without the client's DISCONNECT:
	// the broker writes the will.
	if err := srv.RestartMQTT(); err != nil {
		t.Fatal(err)
	}
	if !testkit.Eventually(t, "will written", func() bool { return srv.StoredCount(token, "status") == 1 }) {
		return
	}

	// A clean Close sends no will.
	broker := mqtt.WithBroker(srv.MQTTURL())
	c, err := mqtt.Dial(testkit.Ctx(t, 0), "tok-2", broker, will)
	if err != nil {
		t.Fatal(err)
	}
	srv.AddThing("tok-2")
	c.Close()
	c, err = mqtt.Dial(testkit.Ctx(t, 0), "tok-2", broker)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "marker", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if n := srv.StoredCount("tok-2", "status"); n != 0 {
		t.Fatalf("will written %d times after Close", n)
	}
}

// proxy forwards loopback connections to addr and counts what clients send.
type proxy struct {
	ln      net.Listener
	accepts atomic.Int64
	sent    atomic.Int64
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

// newProxy forwards what ln accepts to addr; a nil ln listens on loopback.
func newProxy(t *testing.T, ln net.Listener, addr string) *proxy {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	p := &proxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepts.Add(1)
			out, err := net.Dial("tcp", addr)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(counter{out, &p.sent}, in); out.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// counter counts the bytes written through it.
type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c counter) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b))) // before: the answer may come before Write returns
	return c.w.Write(b)
}

func (p *proxy) url() string { return "tcp://" + p.ln.Addr().String() }

func TestBadInputRefusedBeforeIO(t *testing.T) {
	srv, _, _ := setup(t)
	p := newProxy(t, nil, strings.TrimPrefix(srv.MQTTURL(), "tcp://"))
	ctx := testkit.Ctx(t, 0)
	broker := mqtt.WithBroker(p.url())

	bad := []struct {
		name string
		opts []mqtt.Option
		tok  string
		want error
	}{
		{"empty token", nil, "", thethings.ErrNoToken},
		{"token with slash", nil, "a/b", thethings.ErrInvalidToken},
		{"token with wildcard", nil, "a+", thethings.ErrInvalidToken},
		{"token with newline", nil, token + "\n", thethings.ErrInvalidToken},
		{"nil option", []mqtt.Option{nil}, token, thethings.ErrInvalidOption},
		{"bad scheme", []mqtt.Option{mqtt.WithBroker("http://x")}, token, thethings.ErrInvalidOption},
		{"broker path", []mqtt.Option{mqtt.WithBroker("tcp://x/y")}, token, thethings.ErrInvalidOption},
		{"QoS 2", []mqtt.Option{mqtt.WithQoS(2)}, token, thethings.ErrInvalidOption},
		{"keep-alive 0", []mqtt.Option{mqtt.WithKeepAlive(0)}, token, thethings.ErrInvalidOption},
		{"empty client ID", []mqtt.Option{mqtt.WithClientID("")}, token, thethings.ErrInvalidOption},
		{"nil TLS config", []mqtt.Option{mqtt.WithTLSConfig(nil)}, token, thethings.ErrInvalidOption},
		{"TLS config for plain broker", []mqtt.Option{mqtt.WithTLSConfig(&tls.Config{})}, token, thethings.ErrInvalidOption},
		{"empty will", []mqtt.Option{mqtt.WithWill()}, token, thethings.ErrInvalidOption},
		{"bad will key", []mqtt.Option{mqtt.WithWill(thethings.Value{Key: "a b", Value: 1})}, token, thethings.ErrInvalidKey},
		{"NaN will", []mqtt.Option{mqtt.WithWill(thethings.Value{Key: "a", Value: math.NaN()})}, token, thethings.ErrInvalidValue},
	}
	for _, tc := range bad {
		_, err := mqtt.Dial(ctx, tc.tok, append([]mqtt.Option{broker}, tc.opts...)...)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Dial = %v, want %v", tc.name, err, tc.want)
		} else if msg := err.Error(); !strings.HasPrefix(msg, "thethings: mqtt: ") || strings.Count(msg, "thethings:") != 1 || strings.Contains(msg, token) {
			t.Errorf("%s: error text %q", tc.name, msg)
		}
	}
	//lint:ignore SA1012 a nil context is the point
	if _, err := mqtt.Dial(nil, token, broker); !errors.Is(err, thethings.ErrInvalidOption) {
		t.Errorf("nil ctx: %v", err)
	}
	for _, code := range []string{"", " ", "a/b", "a#"} {
		if _, err := mqtt.Activate(ctx, code, broker); !errors.Is(err, thethings.ErrInvalidValue) {
			t.Errorf("Activate(%q) = %v", code, err)
		}
	}
	if n := p.accepts.Load(); n != 0 {
		t.Fatalf("%d connections for refused input", n)
	}

	c, err := mqtt.Dial(ctx, token, broker)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := p.sent.Load() // CONNECT, answered: nothing else is on its way
	geoOff := &thethings.Geo{Lat: 91}
	badWrites := []struct {
		values []thethings.Value
		want   error
	}{
		{[]thethings.Value{{Key: "ok", Value: 1}, {Key: "bad key", Value: 1}}, thethings.ErrInvalidKey},
		{[]thethings.Value{{Key: "$nope", Value: 1}}, thethings.ErrInvalidKey},
		{[]thethings.Value{{Key: "ok", Value: math.Inf(1)}}, thethings.ErrInvalidValue},
		{[]thethings.Value{{Key: "ok", Value: make(chan int)}}, thethings.ErrInvalidValue},
		{[]thethings.Value{{Key: "ok", Value: 1, Geo: geoOff}}, thethings.ErrInvalidValue},
		{[]thethings.Value{{Key: "ok", Value: 1, Datetime: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}, thethings.ErrInvalidValue},
	}
	for _, w := range badWrites {
		err := c.Write(ctx, w.values)
		var we *thethings.WriteError
		if !errors.Is(err, w.want) || !errors.As(err, &we) || len(we.Values) != len(w.values) || we.Unknown {
			t.Errorf("Write(%v) = %v, want a WriteError of all values matching %v", w.values, err, w.want)
		}
	}
	//lint:ignore SA1012 a nil context is the point
	if err := c.Write(nil, []thethings.Value{{Key: "ok", Value: 1}}); !errors.Is(err, thethings.ErrInvalidOption) {
		t.Errorf("nil ctx: %v", err)
	}
	//lint:ignore SA1012 a nil context is the point
	for _, err := range c.Subscribe(nil) {
		if !errors.Is(err, thethings.ErrInvalidOption) {
			t.Errorf("Subscribe(nil) = %v", err)
		}
	}
	if now := p.sent.Load(); now != sent {
		t.Fatalf("refused writes sent %d bytes to the broker", now-sent)
	}
	if err := c.Write(ctx, []thethings.Value{{Key: "ok", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	if p.sent.Load() == sent || srv.StoredCount(token, "ok") != 1 {
		t.Fatal("the proxy does not see writes: the check above proves nothing")
	}
}

// TLS is the default and verifies the broker: a TLS front on the test
// server's broker with a certificate for 127.0.0.1.
func TestTLS(t *testing.T) {
	srv, _, _ := setup(t)
	hs := httptest.NewUnstartedServer(nil)
	hs.StartTLS()
	certs, roots := hs.TLS.Certificates, x509.NewCertPool()
	roots.AddCert(hs.Certificate())
	hs.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: certs})
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, ln, strings.TrimPrefix(srv.MQTTURL(), "tcp://"))
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	for _, scheme := range []string{"mqtts", "ssl"} {
		c, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(scheme+"://127.0.0.1:"+port), mqtt.WithTLSConfig(&tls.Config{RootCAs: roots}))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: scheme, Value: 1}}); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if srv.StoredCount(token, scheme) != 1 {
			t.Fatalf("%s: not stored", scheme)
		}
	}
	// Without the test root the certificate is refused.
	_, err = mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker("mqtts://127.0.0.1:"+port))
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) || strings.Contains(err.Error(), token) {
		t.Fatalf("Dial without the root = %v, want an unknown-authority error", err)
	}
	if p.accepts.Load() != 3 {
		t.Fatalf("%d TLS connections, want 3", p.accepts.Load())
	}
}

// Close leaves no goroutine of the client, even mid-reconnect.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	for _, restart := range []bool{false, true} {
		srv, c, _ := setup(t)
		receive := subscribe(t, c.Subscribe)
		if !testkit.Eventually(t, "subscribed", func() bool { return srv.OpenSubscriptions() == 1 }) {
			return
		}
		if err := c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "k", Value: 1}}); err != nil {
			t.Fatal(err)
		}
		receive()
		if restart {
			if err := srv.RestartMQTT(); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
		// Goroutines running MQTT client code, except the test's own (a
		// Subscribe loop runs on its caller's goroutine).
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var g []string
		for _, s := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(s, "thethings/mqtt_test.") || strings.Contains(s, "runtime.goexit1()") {
				continue // the test's own, or one that has returned and is exiting
			}
			if strings.Contains(s, "eclipse/paho.mqtt.golang") || strings.Contains(s, "thethings-go/thethings/mqtt.") {
				g = append(g, s)
			}
		}
		if len(g) > 0 {
			t.Fatalf("restart %v: %d goroutines left after Close:\n%s", restart, len(g), strings.Join(g, "\n\n"))
		}
		if !testkit.Eventually(t, "the broker saw the client go", func() bool { return srv.OpenSubscriptions() == 0 }) {
			return
		}
	}
}
