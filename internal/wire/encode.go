package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinels of refused writes. The root package exports them under the
// same names, so that errors.Is matches them whichever package refused.
var (
	// ErrInvalidKey: a resource key breaks the platform's key rules.
	ErrInvalidKey = errors.New("thethings: invalid key")
	// ErrInvalidValue: a value, geo position, time or argument cannot be sent.
	ErrInvalidValue = errors.New("thethings: invalid value")
)

// The magic resource keys.
const (
	KeyGeo      = "$geo"
	KeySettings = "$settings"
)

// ValidateKey checks a resource key: letters, digits, '.', '-', '_'; or a
// magic key ($geo, $settings, $settings.<path>) when magic is true. An
// error names the offending character.
func ValidateKey(key string, magic bool) error {
	if key == "" {
		return Errorf("thethings: empty key: %w", ErrInvalidKey)
	}
	if key[0] == '$' {
		if !magic {
			return Errorf("thethings: key %q: '$' is only for the magic resources: %w", key, ErrInvalidKey)
		}
		if key == KeyGeo || key == KeySettings {
			return nil
		}
		if path, ok := strings.CutPrefix(key, KeySettings+"."); ok {
			return ValidateSettingPath(path)
		}
		return Errorf("thethings: key %q is no known magic resource ($geo, $settings, $settings.<path>): %w", key, ErrInvalidKey)
	}
	for i := 0; i < len(key); i++ {
		if !keyByte(key[i]) {
			return Errorf("thethings: key %q: %s not allowed (letters, digits, '.', '-', '_'): %w", key, badChar(key[i:]), ErrInvalidKey)
		}
	}
	return nil
}

// ValidateSettingPath checks a dotted $settings path such as "a.b":
// non-empty segments of key characters.
func ValidateSettingPath(path string) error {
	if path == "" {
		return Errorf("thethings: empty settings path: %w", ErrInvalidKey)
	}
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			return Errorf("thethings: settings path %q has an empty segment: %w", path, ErrInvalidKey)
		}
		for i := 0; i < len(seg); i++ {
			if !keyByte(seg[i]) {
				return Errorf("thethings: settings path %q: %s not allowed: %w", path, badChar(seg[i:]), ErrInvalidKey)
			}
		}
	}
	return nil
}

func keyByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '-' || b == '_'
}

// badChar names the character s starts with: the character itself, or its
// byte when s is not UTF-8 there.
func badChar(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n <= 1 {
		return fmt.Sprintf("byte %#02x (not UTF-8)", s[0])
	}
	return fmt.Sprintf("character %q", r)
}

// Validate reports a position out of range, NaN or infinite.
func (g Geo) Validate() error {
	switch {
	case math.IsNaN(g.Lat) || math.IsNaN(g.Long) || math.IsInf(g.Lat, 0) || math.IsInf(g.Long, 0):
		return Errorf("thethings: geo %v,%v is not a number: %w", g.Lat, g.Long, ErrInvalidValue)
	case g.Lat < -90 || g.Lat > 90:
		return Errorf("thethings: latitude %v outside [-90, 90]: %w", g.Lat, ErrInvalidValue)
	case g.Long < -180 || g.Long > 180:
		return Errorf("thethings: longitude %v outside [-180, 180]: %w", g.Long, ErrInvalidValue)
	}
	return nil
}

// ItemError names the offending item of a refused batch.
type ItemError struct {
	Index int    // position in the caller's slice
	Key   string // the item's key
	Err   error  // why
}

func (e *ItemError) Error() string {
	return fmt.Sprintf("thethings: values[%d] (key %q): %s", e.Index, e.Key, strings.TrimPrefix(e.Err.Error(), "thethings: "))
}

// Unwrap returns the cause.
func (e *ItemError) Unwrap() error { return e.Err }

// CheckItem reports what AppendItem would refuse, without encoding the
// common value types.
func CheckItem(key string, value any, geo *Geo, datetime time.Time) error {
	if err := ValidateKey(key, true); err != nil {
		return err
	}
	switch x := value.(type) {
	case nil, bool, string, int, int64, int32, int16, int8, uint, uint64, uint32, uint16, uint8:
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return notANumber(x)
		}
	default:
		var scratch [256]byte
		if _, err := appendJSON(scratch[:0], value); err != nil {
			return err
		}
	}
	if geo != nil {
		if err := geo.Validate(); err != nil {
			return err
		}
	}
	return CheckDatetime(datetime)
}

// CheckDatetime refuses a datetime outside the years 1..9999; the zero time
// (the platform's clock) passes.
func CheckDatetime(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	if s := t.Unix(); s < unixYear1 || s >= UnixYear10000 {
		return Errorf("thethings: datetime %s outside the years 1..9999: %w", t.UTC().Format(time.RFC3339), ErrInvalidValue)
	}
	return nil
}

// AppendItem validates an item and appends its JSON object to b, in one
// pass.
func AppendItem(b []byte, key string, value any, geo *Geo, datetime time.Time) ([]byte, error) {
	return appendItem(b, key, value, geo, datetime, false)
}

// AppendCheckedItem appends the JSON object of an item that CheckItem
// passed, without checking its key, geo and datetime again. The value is
// encoded, so a value that no longer encodes is still an error.
func AppendCheckedItem(b []byte, key string, value any, geo *Geo, datetime time.Time) ([]byte, error) {
	return appendItem(b, key, value, geo, datetime, true)
}

func appendItem(b []byte, key string, value any, geo *Geo, datetime time.Time, checked bool) ([]byte, error) {
	if !checked {
		if err := ValidateKey(key, true); err != nil {
			return b, err
		}
	}
	// A valid key needs no escaping.
	b = append(b, `{"key":"`...)
	b = append(b, key...)
	b = append(b, `","value":`...)
	var err error
	if b, err = appendJSON(b, value); err != nil {
		return b, err
	}
	if geo != nil {
		if !checked {
			if err := geo.Validate(); err != nil {
				return b, err
			}
		}
		b = append(b, `,"geo":{"lat":`...)
		b = appendFloat(b, geo.Lat, 64)
		b = append(b, `,"long":`...)
		b = appendFloat(b, geo.Long, 64)
		b = append(b, '}')
	}
	if !datetime.IsZero() {
		if !checked {
			if err := CheckDatetime(datetime); err != nil {
				return b, err
			}
		}
		b = append(b, `,"datetime":"`...)
		b = AppendDatetime(b, datetime)
		b = append(b, '"')
	}
	return append(b, '}'), nil
}

// Fields returns the fields of item i of a batch.
type Fields func(i int) (key string, value any, geo *Geo, datetime time.Time)

// AppendBatch appends the write body {"values":[...]} of n items to b,
// validating each (unless checked: CheckItem passed them all). A refused
// item is an *ItemError whose Index is base+i. When b has no room, it is
// grown once to an estimate of the body's size.
func AppendBatch(b []byte, n, base int, item Fields, checked bool) ([]byte, error) {
	if cap(b)-len(b) < 64*n {
		b = append(make([]byte, 0, len(b)+sizeHint(n, item)), b...)
	}
	b = append(b, `{"values":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		key, value, geo, datetime := item(i)
		var err error
		if b, err = appendItem(b, key, value, geo, datetime, checked); err != nil {
			return b, &ItemError{Index: base + i, Key: key, Err: err}
		}
	}
	return append(b, "]}"...), nil
}

// sizeHint estimates the encoded size of a batch, so that it is usually
// encoded without growing its buffer.
func sizeHint(n int, item Fields) int {
	size := len(`{"values":[]}`)
	for i := range n {
		key, value, geo, datetime := item(i)
		size += len(`{"key":"","value":},`) + len(key) + 24
		if s, ok := value.(string); ok {
			size += len(s) + 2
		}
		if geo != nil {
			size += len(`,"geo":{"lat":,"long":}`) + 40
		}
		if !datetime.IsZero() {
			size += len(`,"datetime":"2006-01-02T15:04:05.000Z"`)
		}
	}
	return size
}

func notANumber(x float64) error {
	return Errorf("thethings: value %v is not a number JSON can carry: %w", x, ErrInvalidValue)
}

// AppendValue appends v as the "value" member of an item carries it.
func AppendValue(b []byte, v any) ([]byte, error) { return appendJSON(b, v) }

// appendJSON appends v as encoding/json would encode it (HTML characters
// escaped), with fast paths for the common types. NaN, infinities and
// values encoding/json refuses are errors matching ErrInvalidValue.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case string:
		return appendString(b, x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return b, notANumber(x)
		}
		return appendFloat(b, x, 64), nil
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return b, notANumber(float64(x))
		}
		return appendFloat(b, float64(x), 32), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case json.Number:
		if x == "" {
			return append(b, '0'), nil
		}
		if !validNumber(string(x)) {
			return b, Errorf("thethings: json.Number %q is not a JSON number: %w", string(x), ErrInvalidValue)
		}
		return append(b, x...), nil
	case json.RawMessage:
		if len(x) == 0 {
			return append(b, "null"...), nil
		}
		if !json.Valid(x) {
			return b, Errorf("thethings: json.RawMessage is not valid JSON: %w", ErrInvalidValue)
		}
		return append(b, x...), nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return b, Errorf("thethings: value of type %T cannot be encoded as JSON: %s: %w", v, strings.TrimPrefix(err.Error(), "json: "), ErrInvalidValue)
	}
	return append(b, data...), nil
}

// appendFloat formats f exactly as encoding/json does: shortest
// representation, exponent form only for very small or large magnitudes.
func appendFloat(b []byte, f float64, bits int) []byte {
	abs := math.Abs(f)
	// A whole number whose digits are all exact (a count, a state) is its
	// integer: the shortest form strconv would find, many times faster.
	if abs < 1<<24 || bits == 64 && abs < 1<<53 {
		if i := int64(f); float64(i) == f && (i != 0 || !math.Signbit(f)) {
			return strconv.AppendInt(b, i, 10)
		}
	}
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendString appends s as a JSON string. Printable ASCII without
// characters that need escaping is copied; anything else is escaped by
// encoding/json, so that the output is what encoding/json produces.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			data, _ := json.Marshal(s) // strings always encode
			return append(b, data...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// validNumber reports whether s is a JSON number.
func validNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}
