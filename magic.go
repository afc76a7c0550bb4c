package thethings

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

// The magic resources $geo and $settings hold a thing's current state
// rather than a history. The platform processes writes to them
// asynchronously and does not keep their order when one request mixes
// several, so every setter below sends a request of its own, and a read
// right after a write may still see the former state.

// Location returns the thing's current position, the magic resource $geo.
// A thing whose position was never set gives an error matching
// ErrResourceNotFound.
func (c *Client) Location(ctx context.Context) (Geo, error) {
	raw, err := c.readMagic(ctx, keyGeo)
	if err != nil {
		return Geo{}, err
	}
	g, err := parseGeoJSON(raw)
	if err != nil {
		return Geo{}, err
	}
	return g, nil
}

// parseGeoJSON reads the $geo value: a GeoJSON point
// {"type":"Point","coordinates":[long, lat]}, or the legacy [long, lat].
func parseGeoJSON(raw json.RawMessage) (Geo, error) {
	var coords []float64
	var point struct {
		Type        string    `json:"type"`
		Coordinates []float64 `json:"coordinates"`
	}
	switch {
	case json.Unmarshal(raw, &point) == nil && point.Coordinates != nil:
		if point.Type != "" && point.Type != "Point" {
			return Geo{}, errorf("thethings: $geo is a GeoJSON %q, not a Point: %w", point.Type, ErrInvalidValue)
		}
		coords = point.Coordinates
	case json.Unmarshal(raw, &coords) == nil:
	default:
		return Geo{}, errorf("thethings: $geo value %.100s is no GeoJSON point: %w", raw, ErrInvalidValue)
	}
	if len(coords) < 2 {
		return Geo{}, errorf("thethings: $geo value %.100s has no [long, lat]: %w", raw, ErrInvalidValue)
	}
	g := Geo{Long: coords[0], Lat: coords[1]}
	if err := g.validate(); err != nil {
		return Geo{}, err // a position off the globe is no position
	}
	return g, nil
}

// SetLocation sets the thing's current position, the magic resource $geo,
// sent as a GeoJSON point ([long, lat] on the wire). A position out of
// range is refused before any I/O with ErrInvalidValue. If the request may
// have reached the platform without an answer, the error matches
// ErrOutcomeUnknown.
func (c *Client) SetLocation(ctx context.Context, g Geo) error {
	if err := g.validate(); err != nil {
		return err
	}
	type point struct {
		Type        string     `json:"type"`
		Coordinates [2]float64 `json:"coordinates"`
	}
	return c.writeMagic(ctx, keyGeo, point{Type: "Point", Coordinates: [2]float64{g.Long, g.Lat}})
}

// Settings returns the thing's settings, the magic resource $settings.
// Numbers are json.Number, so they keep their precision; nested objects
// are map[string]any and arrays []any.
func (c *Client) Settings(ctx context.Context) (map[string]any, error) {
	raw, err := c.readMagic(ctx, keySettings)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := decodeNumbers(raw, &m); err != nil {
		return nil, errorf("thethings: $settings is no object: %w", ErrInvalidValue)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// Setting reads one settings entry by its dotted path ("a.b" reads
// $settings.a.b) and decodes it into dst, a non-nil pointer, as
// [Value.Decode] does. A bad path is ErrInvalidKey and a bad dst
// ErrInvalidValue, both before any I/O; a path that is not set gives an
// error matching ErrResourceNotFound.
func (c *Client) Setting(ctx context.Context, path string, dst any) error {
	if err := wire.ValidateSettingPath(path); err != nil {
		return err
	}
	if err := checkPointer(keySettings+"."+path, dst); err != nil {
		return err
	}
	key := keySettings + "." + path
	raw, err := c.readMagic(ctx, key)
	if err != nil {
		return err
	}
	return decodeInto(key, raw, dst)
}

// SetSettings replaces all of the thing's settings, the magic resource
// $settings, with s. An empty map clears them; nil is refused, as is
// anything JSON cannot encode (ErrInvalidValue, before any I/O). If the
// request may have reached the platform without an answer, the error
// matches ErrOutcomeUnknown.
func (c *Client) SetSettings(ctx context.Context, s map[string]any) error {
	if s == nil {
		return errorf("thethings: nil settings (use an empty map to clear them): %w", ErrInvalidValue)
	}
	return c.writeMagic(ctx, keySettings, s)
}

// SetSetting sets one settings entry by its dotted path ("a.b" sets
// $settings.a.b), leaving the others as they are. A bad path is
// ErrInvalidKey and a value JSON cannot encode ErrInvalidValue, both before
// any I/O. If the request may have reached the platform without an answer,
// the error matches ErrOutcomeUnknown.
func (c *Client) SetSetting(ctx context.Context, path string, v any) error {
	if err := wire.ValidateSettingPath(path); err != nil {
		return err
	}
	return c.writeMagic(ctx, keySettings+"."+path, v)
}

// readMagic returns the value of the first item of a magic resource's read.
func (c *Client) readMagic(ctx context.Context, key string) (json.RawMessage, error) {
	var answer json.RawMessage
	rt := c.thingRoute("resources", key)
	if _, err := c.do(ctx, &request{kind: transport.Idempotent, method: http.MethodGet, rt: rt, out: &answer}); err != nil {
		return nil, err
	}
	items, err := wire.DecodeFrame(answer)
	if err != nil {
		return nil, errorf("thethings: GET %s: %w", c.displayPath(rt), err)
	}
	if len(items) == 0 || items[0].Value == nil {
		return nil, errorf("thethings: GET %s: empty answer: %w", c.displayPath(rt), ErrResourceNotFound)
	}
	// The value goes on as JSON to the GeoJSON parser or the caller's type.
	raw, err := json.Marshal(items[0].Value)
	if err != nil {
		return nil, errorf("thethings: GET %s: %w", c.displayPath(rt), err)
	}
	return raw, nil
}

// writeMagic sends one magic resource in a request of its own.
func (c *Client) writeMagic(ctx context.Context, key string, v any) error {
	body, err := wire.AppendItem([]byte(`{"values":[`), key, v, nil, time.Time{})
	if err != nil {
		return errorf("thethings: %s: %w", key, err)
	}
	body = append(body, "]}"...)
	_, err = c.do(ctx, &request{kind: transport.Write, method: http.MethodPost, rt: c.thingRoute(), body: body})
	return err
}

func decodeNumbers(raw []byte, dst any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return d.Decode(dst)
}

// Magic resource keys.
const (
	keyGeo      = wire.KeyGeo
	keySettings = wire.KeySettings
)
