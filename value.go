package thethings

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"time"

	"github.com/thethings-go/thethings/internal/wire"
)

// Geo is a position: latitude in [-90, 90], longitude in [-180, 180].
type Geo struct {
	Lat  float64
	Long float64
}

// validate reports a position out of range, NaN or infinite.
func (g Geo) validate() error { return wire.Geo(g).Validate() }

// Value is one reading of a resource (key). Written values may carry any
// JSON value: numbers, strings, bools, maps, slices, structs, or a
// json.RawMessage passed through as it is. Read values carry what the
// platform returned, which the accessors Float64, Int64, Text and Decode
// convert.
type Value struct {
	Key      string
	Value    any
	Geo      *Geo      // where the reading was taken, or nil
	Datetime time.Time // when it was taken; zero means "now" on the platform's clock
}

// Float64 returns a number, or a string holding one (the platform keeps
// what was written, and "9000" is common), as a float64. Anything else, or
// a number float64 cannot hold, is an error matching ErrInvalidValue.
func (v Value) Float64() (float64, error) {
	var f float64
	var err error
	switch x := v.Value.(type) {
	case json.Number:
		f, err = strconv.ParseFloat(string(x), 64)
	case string:
		f, err = strconv.ParseFloat(x, 64)
	case float64:
		f = x
	case float32:
		f = float64(x)
	case json.RawMessage:
		return Value{Value: decodeAny(x)}.Float64()
	default:
		rv := reflect.ValueOf(x)
		switch {
		case rv.CanInt():
			f = float64(rv.Int())
		case rv.CanUint():
			f = float64(rv.Uint())
		default:
			return 0, v.convError("float64")
		}
	}
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, v.convError("float64")
	}
	return f, nil
}

// Int64 returns an integral number, or a string holding one, as an int64.
// "12", "12.0" and "1.2e1" are 12; "12.5", values outside the int64 range
// and non-numbers are errors matching ErrInvalidValue.
func (v Value) Int64() (int64, error) {
	var s string
	switch x := v.Value.(type) {
	case json.Number:
		s = string(x)
	case string:
		s = x
	case float64:
		return floatToInt(x, v)
	case float32:
		return floatToInt(float64(x), v)
	case json.RawMessage:
		return Value{Key: v.Key, Value: decodeAny(x)}.Int64()
	default:
		rv := reflect.ValueOf(x)
		switch {
		case rv.CanInt():
			return rv.Int(), nil
		case rv.CanUint() && rv.Uint() <= math.MaxInt64:
			return int64(rv.Uint()), nil
		}
		return 0, v.convError("int64")
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, v.convError("int64")
	}
	return floatToInt(f, v)
}

func floatToInt(f float64, v Value) (int64, error) {
	if f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, v.convError("int64")
	}
	return int64(f), nil
}

// Text returns a string value as it is, and a number or a bool in its
// JSON form ("9000", "21.5", "true"). null, objects and arrays are errors
// matching ErrInvalidValue.
func (v Value) Text() (string, error) {
	switch x := v.Value.(type) {
	case string:
		return x, nil
	case json.Number:
		return string(x), nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32), nil
	case json.RawMessage:
		return Value{Key: v.Key, Value: decodeAny(x)}.Text()
	}
	rv := reflect.ValueOf(v.Value)
	switch {
	case rv.CanInt():
		return strconv.FormatInt(rv.Int(), 10), nil
	case rv.CanUint():
		return strconv.FormatUint(rv.Uint(), 10), nil
	}
	return "", v.convError("string")
}

// Decode stores the value in dst, a non-nil pointer, as encoding/json
// would decode the value's JSON. A string holding JSON (such as "9000"
// for an int) is decoded from its contents when the string itself does not
// fit dst. Errors match ErrInvalidValue.
func (v Value) Decode(dst any) error {
	return decodeInto(v.Key, v.Value, dst)
}

func decodeInto(key string, val, dst any) error {
	if err := checkPointer(key, dst); err != nil {
		return err
	}
	raw, ok := val.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(val); err != nil {
			return errorf("thethings: decode %q: %w: %w", key, err, ErrInvalidValue)
		}
	}
	err := json.Unmarshal(raw, dst)
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Value == "string" {
		var s string
		if json.Unmarshal(raw, &s) == nil && json.Unmarshal([]byte(s), dst) == nil {
			return nil
		}
	}
	if err != nil {
		return errorf("thethings: decode %q into %T: %w: %w", key, dst, err, ErrInvalidValue)
	}
	return nil
}

func checkPointer(key string, dst any) error {
	if rv := reflect.ValueOf(dst); rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errorf("thethings: decode %q into %T: need a non-nil pointer: %w", key, dst, ErrInvalidValue)
	}
	return nil
}

func (v Value) convError(to string) error {
	return errorf("thethings: value of %q (%T %s) is no %s: %w", shorten(v.Key), v.Value, shorten(fmt.Sprint(v.Value)), to, ErrInvalidValue)
}

// decodeAny decodes JSON the way read values are: numbers as json.Number.
func decodeAny(raw []byte) any {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var x any
	if d.Decode(&x) != nil {
		return nil
	}
	return x
}
