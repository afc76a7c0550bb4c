package thethings

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Geo is a position: latitude in [-90, 90], longitude in [-180, 180].
type Geo struct {
	Lat  float64
	Long float64
}

// validate reports a position out of range, NaN or infinite.
func (g Geo) validate() error {
	switch {
	case math.IsNaN(g.Lat) || math.IsNaN(g.Long) || math.IsInf(g.Lat, 0) || math.IsInf(g.Long, 0):
		return fmt.Errorf("thethings: geo %v,%v is not a number: %w", g.Lat, g.Long, ErrInvalidValue)
	case g.Lat < -90 || g.Lat > 90:
		return fmt.Errorf("thethings: latitude %v outside [-90, 90]: %w", g.Lat, ErrInvalidValue)
	case g.Long < -180 || g.Long > 180:
		return fmt.Errorf("thethings: longitude %v outside [-180, 180]: %w", g.Long, ErrInvalidValue)
	}
	return nil
}

// Value is one reading of a resource (key). Written values may carry any
// JSON value: numbers, strings, bools, maps, slices, structs, or a
// json.RawMessage passed through as it is. Read values carry what the
// platform returned (see the accessors in resources.go).
type Value struct {
	Key      string
	Value    any
	Geo      *Geo      // where the reading was taken, or nil
	Datetime time.Time // when it was taken; zero means "now" on the platform's clock
}

// Magic resource keys.
const (
	keyGeo      = "$geo"
	keySettings = "$settings"
)

// validateKey checks a resource key: letters, digits, '.', '-', '_'; or a
// magic key ($geo, $settings, $settings.<path>) when magic is true.
func validateKey(key string, magic bool) error {
	if key == "" {
		return fmt.Errorf("thethings: empty key: %w", ErrInvalidKey)
	}
	if strings.HasPrefix(key, "$") {
		if !magic {
			return fmt.Errorf("thethings: key %q: '$' is only for the magic resources: %w", key, ErrInvalidKey)
		}
		if key == keyGeo || key == keySettings {
			return nil
		}
		if path, ok := strings.CutPrefix(key, keySettings+"."); ok {
			return validateSettingPath(path)
		}
		return fmt.Errorf("thethings: key %q is no known magic resource ($geo, $settings, $settings.<path>): %w", key, ErrInvalidKey)
	}
	for i := 0; i < len(key); i++ {
		if !keyByte(key[i]) {
			return fmt.Errorf("thethings: key %q: character %q not allowed (letters, digits, '.', '-', '_'): %w", key, key[i], ErrInvalidKey)
		}
	}
	return nil
}

// validateSettingPath checks a dotted $settings path such as "a.b": non-empty
// segments of key characters.
func validateSettingPath(path string) error {
	if path == "" {
		return fmt.Errorf("thethings: empty settings path: %w", ErrInvalidKey)
	}
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			return fmt.Errorf("thethings: settings path %q has an empty segment: %w", path, ErrInvalidKey)
		}
		for i := 0; i < len(seg); i++ {
			if !keyByte(seg[i]) || seg[i] == '.' {
				return fmt.Errorf("thethings: settings path %q: character %q not allowed: %w", path, seg[i], ErrInvalidKey)
			}
		}
	}
	return nil
}

func keyByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '-' || b == '_'
}
