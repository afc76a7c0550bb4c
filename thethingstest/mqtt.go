package thethingstest

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The platform's MQTT topics.
const (
	thingTopicPrefix      = "v2/things/"
	activationTopicPrefix = "v2/activations/"
	// consumedWillTopic takes a Last Will the server already wrote to the
	// thing, so the broker sends it to no one as it is.
	consumedWillTopic = "$thethingstest/will"
)

// WithMQTT makes the server also speak the platform's MQTT device API: an
// embedded MQTT 3.1.1 broker on 127.0.0.1 (see [Server.MQTTURL]) bridged to
// the same store as the REST API.
//
//   - A publish on v2/things/{token} carrying the REST write body is
//     validated and stored as a REST write is: it is readable over REST and
//     reaches REST and MQTT subscribers. A publish to an unknown token or
//     with a body the REST API would refuse is acknowledged and dropped, as
//     the platform does. A Last Will on the thing topic is written the same
//     way when its client goes away.
//   - A REST write reaches MQTT subscribers of v2/things/{token} as the
//     subscription stream's data array.
//   - Subscribing to v2/activations/{code}/{random} activates the code: the
//     broker answers on that topic with {"status":"created","thingToken":..}
//     or {"status":"error","message":"activation code not found"}.
//
// Subscriptions to a thing topic count in [Server.OpenSubscriptions].
func WithMQTT() Option {
	return func(c *config) error {
		c.mqtt = true
		return nil
	}
}

// maxTopicRoom is the room a PUBLISH needs besides its payload: fixed
// header, the longest topic MQTT allows and a packet id.
const maxTopicRoom = 5 + 2 + 65535 + 2

// mqttBroker is the embedded broker.
type mqttBroker struct {
	mu   sync.Mutex // guards srv and addr; held across restarts
	srv  *mochi.Server
	addr string // host:port, kept across restarts
	// live is srv while it serves; nil from the moment it starts closing,
	// so that writes made meanwhile (Last Wills) are not published to it.
	live atomic.Pointer[mochi.Server]
}

// MQTTURL returns the broker's URL, "tcp://127.0.0.1:N", or "" without
// [WithMQTT] or before Start.
func (s *Server) MQTTURL() string {
	if s.mq == nil {
		return ""
	}
	s.mq.mu.Lock()
	defer s.mq.mu.Unlock()
	if s.mq.srv == nil {
		return ""
	}
	return "tcp://" + s.mq.addr
}

// RestartMQTT stops the MQTT broker, dropping every MQTT connection as a
// broker restart does, and starts it again on the same address, so that a
// test can check that its clients reconnect and subscribe again. The
// stored values are kept. It fails without [WithMQTT] or before Start.
func (s *Server) RestartMQTT() error {
	if s.mq == nil {
		return errors.New("thethingstest: RestartMQTT without WithMQTT")
	}
	s.mq.mu.Lock()
	defer s.mq.mu.Unlock()
	if s.mq.srv == nil {
		return errors.New("thethingstest: RestartMQTT: the broker is not running")
	}
	s.mq.live.Store(nil)
	_ = s.mq.srv.Close()
	s.mq.srv = nil
	return s.serveMQTT(s.mq.addr)
}

// startMQTT starts the broker on 127.0.0.1 when WithMQTT is set.
func (s *Server) startMQTT() error {
	if s.mq == nil {
		return nil
	}
	s.mq.mu.Lock()
	defer s.mq.mu.Unlock()
	select {
	case <-s.done:
		return http.ErrServerClosed
	default:
	}
	if s.mq.srv != nil {
		return nil
	}
	return s.serveMQTT("127.0.0.1:0")
}

// stopMQTT stops the broker; it waits for its connections to end.
func (s *Server) stopMQTT() {
	if s.mq == nil {
		return
	}
	s.mq.mu.Lock()
	defer s.mq.mu.Unlock()
	if s.mq.srv != nil {
		s.mq.live.Store(nil)
		_ = s.mq.srv.Close()
		s.mq.srv = nil
	}
}

// serveMQTT starts a broker on addr. The caller holds s.mq.mu.
func (s *Server) serveMQTT(addr string) error {
	caps := mochi.NewDefaultServerCapabilities()
	// A packet's size is known from its header: one larger than a write
	// body and a full topic is refused before its bytes are read.
	caps.MaximumPacketSize = uint32(min(s.cfg.maxBody+maxTopicRoom, math.MaxUint32))
	// Frames waiting for a slow subscriber, as for a REST subscription.
	caps.MaximumClientWritesPending = maxQueue
	srv := mochi.New(&mochi.Options{
		Capabilities: caps,
		InlineClient: true,
		Logger:       slog.New(slog.DiscardHandler), // its lines would carry topics, hence tokens
	})
	if err := srv.AddHook(&bridge{s: s, srv: srv, subs: map[*mochi.Client]map[string]bool{}}, nil); err != nil {
		return err
	}
	l := newTCPListener("tcp", addr)
	if err := srv.AddListener(l); err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return err
	}
	s.mq.srv, s.mq.addr = srv, l.Address()
	s.mq.live.Store(srv)
	return nil
}

// publishMQTT sends a REST write's stream frame to the thing topic's MQTT
// subscribers.
func (s *Server) publishMQTT(token string, frame []byte) {
	if s.mq == nil {
		return
	}
	if srv := s.mq.live.Load(); srv != nil {
		_ = srv.Publish(thingTopicPrefix+token, frame, false, 1)
	}
}

// writeMQTT stores a write published on a thing topic as the REST write
// of the same body, without query parameters, would.
func (s *Server) writeMQTT(token string, body []byte) {
	if s.thing(token) == nil || int64(len(body)) > s.cfg.maxBody {
		return // dropped, as the platform drops publishes to unknown things
	}
	_, _ = s.write(&http.Request{URL: &url.URL{}}, token, body)
}

// thingToken returns the token of a thing topic.
func thingToken(topic string) (string, bool) {
	t, ok := strings.CutPrefix(topic, thingTopicPrefix)
	return t, ok && t != "" && !strings.ContainsAny(t, "/+#")
}

// bridge connects the broker to the Server's store.
type bridge struct {
	mochi.HookBase
	s   *Server
	srv *mochi.Server

	subsMu sync.Mutex
	subs   map[*mochi.Client]map[string]bool // thing-topic subscriptions per connection
}

func (b *bridge) ID() string { return "thethingstest" }

func (b *bridge) Provides(h byte) bool {
	switch h {
	case mochi.OnConnectAuthenticate, mochi.OnACLCheck,
		mochi.OnPublish, mochi.OnWill, mochi.OnSubscribe, mochi.OnSubscribed,
		mochi.OnUnsubscribed, mochi.OnDisconnect, mochi.OnRetainPublished:
		return true
	}
	return false
}

// OnConnectAuthenticate lets every client in: the platform's MQTT API
// has no credentials, the thing token is in the topic.
func (b *bridge) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

// OnACLCheck allows every topic, as the platform does.
func (b *bridge) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// OnPublish takes a device's write: the write path stores it and sends
// the stream frame to subscribers, so the body itself goes to no one.
func (b *bridge) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	token, ok := thingToken(pk.TopicName)
	if !ok {
		return pk, nil
	}
	b.s.writeMQTT(token, pk.Payload)
	return pk, packets.CodeSuccessIgnore
}

// OnWill writes a Last Will sent to a thing topic, as a publish would be.
func (b *bridge) OnWill(_ *mochi.Client, will mochi.Will) (mochi.Will, error) {
	token, ok := thingToken(will.TopicName)
	if !ok {
		return will, nil
	}
	b.s.writeMQTT(token, will.Payload)
	will.TopicName = consumedWillTopic
	will.Retain = false
	return will, nil
}

// OnSubscribe activates a code when its activation topic is subscribed:
// the answer is retained on that topic, so the broker sends it right
// after the SUBACK.
func (b *bridge) OnSubscribe(_ *mochi.Client, pk packets.Packet) packets.Packet {
	for _, f := range pk.Filters {
		rest, ok := strings.CutPrefix(f.Filter, activationTopicPrefix)
		code, random, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 || code == "" || random == "" || strings.ContainsAny(rest, "+#") || strings.Contains(random, "/") {
			continue
		}
		var answer []byte
		switch token, _, err := b.s.activate(code, "", false); {
		case err == nil:
			answer, _ = json.Marshal(map[string]string{"status": "created", "message": "thing activated", "thingToken": token})
		case errors.Is(err, errCodeNotFound):
			answer, _ = json.Marshal(map[string]string{"status": "error", "message": msgCodeNotFound})
		default:
			answer, _ = json.Marshal(map[string]string{"status": "error", "message": msgStorage})
		}
		b.srv.Topics.RetainMessage(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
			TopicName:   f.Filter,
			Payload:     answer,
		})
	}
	return pk
}

// OnRetainPublished forgets an activation answer once it was sent.
func (b *bridge) OnRetainPublished(_ *mochi.Client, pk packets.Packet) {
	if strings.HasPrefix(pk.TopicName, activationTopicPrefix) {
		b.srv.Topics.RetainMessage(packets.Packet{TopicName: pk.TopicName})
	}
}

// OnSubscribed counts thing-topic subscriptions in OpenSubscriptions.
func (b *bridge) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	b.subsMu.Lock()
	defer b.subsMu.Unlock()
	for i, f := range pk.Filters {
		if _, ok := thingToken(f.Filter); !ok || i >= len(codes) || codes[i] >= 0x80 {
			continue
		}
		m := b.subs[cl]
		if m == nil {
			m = map[string]bool{}
			b.subs[cl] = m
		}
		if !m[f.Filter] {
			m[f.Filter] = true
			b.s.openSubs.Add(1)
		}
	}
}

func (b *bridge) OnUnsubscribed(cl *mochi.Client, pk packets.Packet) {
	b.subsMu.Lock()
	defer b.subsMu.Unlock()
	for _, f := range pk.Filters {
		if m := b.subs[cl]; m[f.Filter] {
			delete(m, f.Filter)
			b.s.openSubs.Add(-1)
		}
	}
}

func (b *bridge) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	b.subsMu.Lock()
	defer b.subsMu.Unlock()
	b.s.openSubs.Add(-int64(len(b.subs[cl])))
	delete(b.subs, cl)
}
