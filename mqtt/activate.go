package mqtt

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

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
// An unknown or used code fails with an error matching
// [thethings.ErrActivationCodeNotFound]; an empty code, or one that cannot
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
	if err := a.wait(ctx, t); err != nil {
		return "", a.fail("activation", err)
	}
	var p []byte
	select {
	case p = <-answer:
	case err := <-cn.lost:
		return "", a.fail("activation", fmt.Errorf("connection lost: %s", errString(err)))
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
		msg := out.Message
		if msg == "" {
			msg = "refused"
		}
		// The broker's message, matching the REST client's sentinel.
		return "", &wrapped{msg: "thethings: mqtt: activation refused: " + msg, err: thethings.ErrActivationCodeNotFound}
	}
	return out.ThingToken, nil
}
