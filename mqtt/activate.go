package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/wire"
)

// Activate turns an activation code into a thing over MQTT, as the
// platform's MQTT devices do: it subscribes to
// v2/activations/{code}/{random}, where the broker answers with the new
// thing token, and then connects as that thing (with the Last Will, when
// one is set). Persist [Client.ThingToken]: the code is spent.
//
// A refusal is an [*ActivationError]; an unknown or used code's matches
// [thethings.ErrActivationCodeNotFound]. An empty code, or one that cannot
// be part of a topic, with [thethings.ErrInvalidValue] before any I/O.
// When the activation succeeded but connecting as the thing fails, the
// Client is returned anyway (the token must not be lost) and keeps
// reconnecting as after a dropped link.
func Activate(ctx context.Context, activationCode string, opts ...Option) (*Client, error) {
	if ctx == nil {
		return nil, optionError("nil context")
	}
	if strings.TrimSpace(activationCode) == "" || strings.ContainsAny(activationCode, "/+#\x00") {
		return nil, wire.Errorf("thethings: mqtt: activation code empty or holding one of / + # NUL: %w", thethings.ErrInvalidValue)
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	token, err := activate(ctx, cfg, activationCode)
	if err != nil {
		return nil, err
	}
	if err := checkToken(token); err != nil {
		return nil, wire.Errorf("thethings: mqtt: activation: the broker sent an unusable thing token: %w", err)
	}
	c := newClient(token, cfg)
	cn, err := c.connect(ctx)
	if err != nil {
		cfg.logger.Warn("thethings: mqtt: activated, connecting as the thing failed; reconnecting", "broker", cfg.broker, "err", err.Error())
		cn = nil
	} else {
		c.setUp(cn)
	}
	c.wg.Add(1)
	go c.run(cn)
	return c, nil
}

// activate runs the activation exchange on a session of its own.
func activate(ctx context.Context, cfg *config, code string) (string, error) {
	acfg := *cfg
	acfg.will = nil // the Last Will is the thing's, not this session's
	a := newClient("", &acfg)
	defer a.cancel()
	cn, err := a.connect(ctx)
	if err != nil {
		return "", err
	}
	defer cn.pc.Disconnect(quiesce)
	answer := make(chan []byte, 1)
	topic := "v2/activations/" + code + "/" + randomHex(8)
	t := cn.pc.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		select {
		case answer <- m.Payload():
		default:
		}
	})
	if err := a.wait(ctx, t, nil); err != nil {
		return "", a.fail("activation", err)
	}
	var p []byte
	select {
	case p = <-answer:
	case err := <-cn.lost:
		if err == nil {
			err = errors.New("closed")
		}
		return "", a.fail("activation", fmt.Errorf("connection lost: %w", err))
	case <-ctx.Done():
		return "", a.fail("activation", context.Cause(ctx))
	}
	var out struct {
		Status     string `json:"status"`
		Message    string `json:"message"`
		ThingToken string `json:"thingToken"`
	}
	if err := json.Unmarshal(p, &out); err != nil {
		return "", wire.Errorf("thethings: mqtt: activation: undecodable answer: %w", err)
	}
	if strings.EqualFold(out.Status, "error") || out.ThingToken == "" {
		return "", &ActivationError{Status: quote(out.Status, maxStatus), Message: quote(out.Message, maxMessage)}
	}
	return out.ThingToken, nil
}

const (
	maxMessage = 200 // bytes of the broker's message an ActivationError keeps
	maxStatus  = 32
)

// ActivationError is the broker's refusal of an activation. It matches
// [thethings.ErrActivationCodeNotFound] with errors.Is only when the broker
// said the code was not found ("activation code not found", as the
// platform's REST API says it); any other refusal ("internal error, try
// again later") does not, so a device does not throw a valid code away.
type ActivationError struct {
	// Status and Message are the broker's answer as it may be shown:
	// control characters escaped (\x1b, \u0085), cut at 32 and 200 bytes.
	Status  string
	Message string
}

// Error reads "thethings: mqtt: activation refused: " and the message.
func (e *ActivationError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "no message, status " + strconv.Quote(e.Status)
	}
	return "thethings: mqtt: activation refused: " + msg
}

// Is reports whether the refusal says the code was not found.
func (e *ActivationError) Is(target error) bool {
	return target == thethings.ErrActivationCodeNotFound &&
		strings.Contains(strings.ToLower(e.Message), "activation code not found")
}

// quote makes s, decoded JSON (so valid UTF-8), safe to show on a terminal,
// and short: control characters and what else strconv does not print
// literally are escaped as Go would quote them, and the result is cut at
// n bytes on a rune boundary, "..." marking the cut.
func quote(s string, n int) string {
	var b strings.Builder
	for len(s) > 0 {
		r, w := utf8.DecodeRuneInString(s)
		piece := s[:w]
		if !strconv.IsPrint(r) {
			q := strconv.QuoteRune(r)
			piece = q[1 : len(q)-1]
		}
		if b.Len()+len(piece) > n {
			b.WriteString("...")
			break
		}
		b.WriteString(piece)
		s = s[w:]
	}
	return b.String()
}
