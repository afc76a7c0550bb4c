package mqtt_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/testkit"
	"github.com/thethings-go/thethings/mqtt"
)

// hostileBroker accepts CONNECT, answers CONNACK, and then handles every
// other packet with onPacket (packet type, connection) until onPacket
// returns false or the client or the test ends the connection.
type hostileBroker struct {
	// refuseFrom, when not 0, makes connection number refuseFrom (from 1)
	// and later ones end at CONNECT without a CONNACK.
	refuseFrom atomic.Int64
	accepted   atomic.Int64
	// connack, when set, is sent in place of the CONNACK.
	connack atomic.Pointer[[]byte]

	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newHostileBroker(t *testing.T, onPacket func(typ byte, body []byte, c net.Conn) bool) *hostileBroker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileBroker{ln: ln}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := h.accepted.Add(1)
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for first := true; ; first = false {
					// A fixed header, its remaining length a varint as Go's,
					// and the body.
					head, err := r.ReadByte()
					if err != nil {
						return
					}
					size, err := binary.ReadUvarint(r)
					if err != nil {
						return
					}
					body := make([]byte, size)
					if _, err := io.ReadFull(r, body); err != nil {
						return
					}
					if first {
						if r := h.refuseFrom.Load(); r != 0 && n >= r {
							return
						}
						connack := []byte{0x20, 2, 0, 0}
						if p := h.connack.Load(); p != nil {
							connack = *p
						}
						if _, err := c.Write(connack); err != nil {
							return
						}
						continue
					}
					if !onPacket(head>>4, body, c) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		h.mu.Lock()
		for _, c := range h.conns {
			c.Close()
		}
		h.mu.Unlock()
		h.wg.Wait()
	})
	return h
}

func (h *hostileBroker) url() string { return "tcp://" + h.ln.Addr().String() }

const (
	publish         = 3
	subscribePacket = 8
)

// A PUBLISH the broker never acknowledged has an unknown outcome, whether
// the connection drops or the caller's ctx ends.
func TestWriteOutcomeUnknown(t *testing.T) {
	values := []thethings.Value{{Key: "a", Value: 1}}
	t.Run("connection dropped", func(t *testing.T) {
		h := newHostileBroker(t, func(typ byte, _ []byte, _ net.Conn) bool { return typ != publish })
		c, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(h.url()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Write(testkit.Ctx(t, 0), values)
		var we *thethings.WriteError
		if !errors.Is(err, thethings.ErrOutcomeUnknown) || !errors.As(err, &we) || !we.Unknown || len(we.Values) != 1 {
			t.Fatalf("Write = %v, want an unknown-outcome WriteError", err)
		}
		if strings.Contains(err.Error(), token) {
			t.Fatal("token in error")
		}
	})
	t.Run("ctx ended", func(t *testing.T) {
		h := newHostileBroker(t, func(byte, []byte, net.Conn) bool { return true }) // never acknowledges
		c, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(h.url()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		more := append(make([]thethings.Value, 0, 150), values...)
		for range 149 {
			more = append(more, thethings.Value{Key: "b", Value: 2})
		}
		err = c.Write(ctx, more)
		if !errors.Is(err, thethings.ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Write = %v, want unknown outcome and DeadlineExceeded", err)
		}
		var notWritten, unknown []thethings.Value
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var we *thethings.WriteError
			if errors.As(e, &we) && we.Unknown {
				unknown = append(unknown, we.Values...)
			} else if errors.As(e, &we) {
				notWritten = append(notWritten, we.Values...)
			}
		}
		if len(unknown) != 100 || len(notWritten) != 50 {
			t.Fatalf("unknown %d, not written %d: want the first message's 100 and the unsent 50", len(unknown), len(notWritten))
		}
	})
}

// A dial that cannot finish ends with the caller's ctx, and leaves nothing
// running.
func TestDialHonoursCtx(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers CONNECT
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(testkit.Patience)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	dialed := make(chan error, 1)
	go func() {
		_, err := mqtt.Dial(ctx, token, mqtt.WithBroker("tcp://"+ln.Addr().String()))
		dialed <- err
	}()
	conn, err := ln.Accept() // Dial now waits for an answer that never comes
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cancel()
	select {
	case err := <-dialed:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Dial = %v, want context.Canceled", err)
		}
	case <-time.After(testkit.Patience):
		t.Fatal("Dial outlived its ctx")
	}
}

// A Write whose ctx ended before anything was sent says so: its values
// were certainly not written.
func TestWriteWithEndedCtxSendsNothing(t *testing.T) {
	srv, c, _ := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := c.Write(ctx, []thethings.Value{{Key: "k", Value: 1}})
	var we *thethings.WriteError
	if !errors.Is(err, context.Canceled) || errors.Is(err, thethings.ErrOutcomeUnknown) || !errors.As(err, &we) || len(we.Values) != 1 {
		t.Fatalf("Write = %v, want a not-written WriteError matching context.Canceled", err)
	}
	if srv.StoredCount(token, "k") != 0 {
		t.Fatal("stored")
	}
}

// A broker that refuses the subscription ends the sequence with an error.
func TestSubscribeRefused(t *testing.T) {
	h := newHostileBroker(t, func(typ byte, body []byte, c net.Conn) bool {
		if typ == subscribePacket {
			_, err := c.Write([]byte{0x90, 3, body[0], body[1], 0x80})
			return err == nil
		}
		return true
	})
	c, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(h.url()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var errs []error
	for _, err := range c.Subscribe(testkit.Ctx(t, 0)) {
		errs = append(errs, err)
	}
	if len(errs) != 1 || errs[0] == nil || !strings.Contains(errs[0].Error(), "refused the subscription") {
		t.Fatalf("Subscribe yielded %v, want one refusal", errs)
	}
}

// pub encodes a PUBLISH: QoS 0 when id is 0, else QoS 1 with packet
// identifier id.
func pub(topic string, id uint16, payload string) []byte {
	h, rest := byte(0x30), 2+len(topic)+len(payload)
	if id != 0 {
		h, rest = 0x32, rest+2
	}
	// The remaining length is a varint as Go's.
	b := binary.AppendUvarint([]byte{h}, uint64(rest))
	b = append(b, byte(len(topic)>>8), byte(len(topic)))
	b = append(b, topic...)
	if id != 0 {
		b = append(b, byte(id>>8), byte(id))
	}
	return append(b, payload...)
}

// A message that does not decode is an error; the sequence goes on. The
// platform's data array and a forwarded write body both decode. A message
// with some bad items delivers its good ones, then the error.
func TestSubscribeMalformedMessage(t *testing.T) {
	topic := "v2/things/" + token
	h := newHostileBroker(t, func(typ byte, body []byte, c net.Conn) bool {
		if typ != subscribePacket {
			return true
		}
		out := []byte{0x90, 3, body[0], body[1], 1}
		out = append(out, pub(topic, 0, `[{"key":"a","value":1}]`)...)
		out = append(out, pub(topic, 0, `[{"key":`)...)
		out = append(out, pub("v2/things/other", 0, `[{"key":"x","value":1}]`)...)
		out = append(out, pub(topic, 0, `{"values":[{"key":"b","value":"2"}]}`)...)
		out = append(out, pub(topic, 0, `[{"key":"c","value":3},{"key":5},{"key":"d","value":4}]`)...)
		_, err := c.Write(out)
		return err == nil
	})
	c, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(h.url()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	for m, err := range c.Subscribe(testkit.Ctx(t, 0)) {
		switch {
		case err != nil:
			if strings.Contains(err.Error(), token) || !strings.HasPrefix(err.Error(), "thethings: mqtt: message: ") {
				t.Fatalf("error %q", err)
			}
			got = append(got, "error")
		default:
			var keys []string
			for _, v := range m.Values {
				keys = append(keys, v.Key)
			}
			got = append(got, strings.Join(keys, "+"))
		}
		if len(got) == 5 {
			break
		}
	}
	if strings.Join(got, ",") != "a,error,b,c+d,error" {
		t.Fatalf("got %v, want a, an error, b, c+d, an error", got)
	}
}

// A broker that stops answering is found out by the keep-alive, and the
// client reconnects by itself.
func TestKeepAliveFindsADeadLink(t *testing.T) {
	h := newHostileBroker(t, func(byte, []byte, net.Conn) bool {
		return true // takes PINGREQ, never answers it
	})
	var logs syncBuffer
	c, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(h.url()), mqtt.WithKeepAlive(time.Second),
		mqtt.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testkit.Eventually(t, "a reconnect after the unanswered ping", func() bool {
		return strings.Contains(logs.String(), "pingresp not received") && strings.Contains(logs.String(), "reconnected")
	})
}

// When the broker activated the thing but connecting as it fails, Activate
// still returns the Client, so the token is not lost, and the Client keeps
// reconnecting.
func TestActivateKeepsTheTokenWhenTheThingCannotConnect(t *testing.T) {
	h := newHostileBroker(t, func(typ byte, body []byte, c net.Conn) bool {
		if typ != subscribePacket {
			return true
		}
		topicLen := int(body[2])<<8 | int(body[3])
		topic := string(body[4 : 4+topicLen])
		out := append([]byte{0x90, 3, body[0], body[1], 1}, pub(topic, 0, `{"status":"created","thingToken":"new-thing-token"}`)...)
		_, err := c.Write(out)
		return err == nil
	})
	h.refuseFrom.Store(2)
	c, err := mqtt.Activate(testkit.Ctx(t, 0), "CODE", mqtt.WithBroker(h.url()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ThingToken() != "new-thing-token" {
		t.Fatalf("token %q", c.ThingToken())
	}
	testkit.Eventually(t, "reconnect attempts", func() bool { return h.accepted.Load() >= 4 })
}

// A Write whose ctx has no deadline is bounded by the write timeout: a
// broker that never sends the PUBACK makes it return an unknown-outcome
// WriteError matching DeadlineExceeded, not block until Close.
func TestWriteTimeoutWithoutDeadline(t *testing.T) {
	h := newHostileBroker(t, func(byte, []byte, net.Conn) bool { return true }) // never acknowledges
	c, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(h.url()), mqtt.WithWriteTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- c.Write(context.Background(), []thethings.Value{{Key: "a", Value: 1}}) }()
	select {
	case err = <-done:
	case <-testkit.Ctx(t, 0).Done():
		t.Fatal("Write(context.Background()) without a PUBACK never returned")
	}
	var we *thethings.WriteError
	if !errors.As(err, &we) || !we.Unknown || !errors.Is(err, thethings.ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "WithWriteTimeout") || strings.Contains(err.Error(), token) {
		t.Fatalf("Write = %v, want an unknown-outcome WriteError naming the write timeout", err)
	}
}

// WithWriteTimeout refuses a duration that is not positive.
func TestWriteTimeoutOption(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		if _, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithWriteTimeout(d)); !errors.Is(err, thethings.ErrInvalidOption) {
			t.Errorf("WithWriteTimeout(%v): %v, want ErrInvalidOption", d, err)
		}
	}
}

// Only "activation code not found" means the code is gone: another
// refusal must not make a device throw a valid code away. The broker's
// message is quoted short, its control characters escaped.
func TestActivateRefusals(t *testing.T) {
	// A broker answering every activation subscription with answer.
	activationBroker := func(t *testing.T, answer string) *hostileBroker {
		return newHostileBroker(t, func(typ byte, body []byte, c net.Conn) bool {
			if typ != subscribePacket {
				return true
			}
			topicLen := int(body[2])<<8 | int(body[3])
			topic := string(body[4 : 4+topicLen])
			_, err := c.Write(append([]byte{0x90, 3, body[0], body[1], 1}, pub(topic, 1, answer)...))
			return err == nil
		})
	}
	t.Run("not found", func(t *testing.T) {
		h := activationBroker(t, `{"status":"error","message":"activation code not found"}`)
		_, err := mqtt.Activate(testkit.Ctx(t, 0), "CODE", mqtt.WithBroker(h.url()))
		var ae *mqtt.ActivationError
		if !errors.Is(err, thethings.ErrActivationCodeNotFound) || !errors.As(err, &ae) || ae.Message != "activation code not found" {
			t.Fatalf("Activate = %v, want ErrActivationCodeNotFound", err)
		}
	})
	t.Run("other refusal", func(t *testing.T) {
		hostile := "internal error, try again later \x1b]52;c;aGk=\x07\x1b[2J\u009b31m\xff" + strings.Repeat("x", 200_000)
		answer, _ := json.Marshal(map[string]string{"status": "error", "message": hostile})
		h := activationBroker(t, string(answer))
		_, err := mqtt.Activate(testkit.Ctx(t, 0), "CODE", mqtt.WithBroker(h.url()))
		var ae *mqtt.ActivationError
		if err == nil || errors.Is(err, thethings.ErrActivationCodeNotFound) || !errors.As(err, &ae) {
			t.Fatalf("Activate = %v, want an ActivationError that is not ErrActivationCodeNotFound", err)
		}
		msg := err.Error()
		if len(msg) > 300 || !strings.HasPrefix(msg, "thethings: mqtt: activation refused: internal error, try again later \\x1b]52;c;aGk=\\a\\x1b[2J\\u009b31m\ufffd") {
			t.Fatalf("error %q (%d bytes): want the message escaped and cut", msg, len(msg))
		}
		for _, r := range msg {
			if r < 0x20 || (r >= 0x7f && r < 0xa0) {
				t.Fatalf("error holds control character %U: %q", r, msg)
			}
		}
	})
}

// A huge packet in place of the activation answer is refused before it
// is allocated, and Activate says so.
func TestActivateHugeAnswer(t *testing.T) {
	h := newHostileBroker(t, func(typ byte, body []byte, c net.Conn) bool {
		if typ != subscribePacket {
			return true
		}
		_, err := c.Write(append([]byte{0x90, 3, body[0], body[1], 1, publish << 4}, hugeLength...))
		return err == nil
	})
	_, err := mqtt.Activate(testkit.Ctx(t, 0), "CODE", mqtt.WithBroker(h.url()))
	if !errors.Is(err, mqtt.ErrPacketTooLarge) || errors.Is(err, thethings.ErrActivationCodeNotFound) {
		t.Fatalf("Activate = %v, want ErrPacketTooLarge", err)
	}
}

// A huge packet in place of the PUBACK ends the connection before it is
// allocated; the Write's outcome is unknown, and the error says why.
func TestWriteHugeAnswer(t *testing.T) {
	h := newHostileBroker(t, func(typ byte, _ []byte, c net.Conn) bool {
		if typ == publish {
			_, err := c.Write(append([]byte{4 << 4}, hugeLength...)) // PUBACK
			return err == nil
		}
		return true
	})
	c, err := mqtt.Dial(testkit.Ctx(t, 0), token, mqtt.WithBroker(h.url()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Write(testkit.Ctx(t, 0), []thethings.Value{{Key: "a", Value: 1}})
	var we *thethings.WriteError
	if !errors.As(err, &we) || !we.Unknown || !errors.Is(err, mqtt.ErrPacketTooLarge) {
		t.Fatalf("Write = %v, want an unknown-outcome WriteError matching ErrPacketTooLarge", err)
	}
}
