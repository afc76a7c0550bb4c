package thethingstest

import (
	"errors"
	"strings"
	"time"
)

const isoMillis = "2006-01-02T15:04:05.000Z"

var errBadDatetime = errors.New("invalid date")

// parseDatetime accepts YYYYMMDDHHmmss, YYYYMMDDTHHmmss and ISO 8601
// (2006-01-02T15:04:05 with optional fraction and optional zone Z or
// ±hh:mm; no zone means UTC). It returns Unix milliseconds (floored).
func parseDatetime(s string) (int64, error) {
	var t time.Time
	var err error
	switch {
	case len(s) == 14 && allDigits(s):
		t, err = time.ParseInLocation("20060102150405", s, time.UTC)
	case len(s) == 15 && s[8] == 'T' && allDigits(s[:8]) && allDigits(s[9:]):
		t, err = time.ParseInLocation("20060102T150405", s, time.UTC)
	case len(s) >= 19 && s[10] == 'T':
		if hasZone(s) {
			t, err = time.Parse("2006-01-02T15:04:05.999999999Z07:00", s)
		} else {
			t, err = time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC)
		}
	default:
		return 0, errBadDatetime
	}
	if err != nil {
		return 0, errBadDatetime
	}
	return t.UnixMilli(), nil
}

func hasZone(s string) bool {
	if strings.HasSuffix(s, "Z") {
		return true
	}
	rest := s[19:]
	return strings.ContainsAny(rest, "+-")
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func appendISO(b []byte, ms int64) []byte {
	return time.UnixMilli(ms).UTC().AppendFormat(b, isoMillis)
}

// validPlainKey reports whether key is a non-empty run of letters, digits,
// '.', '-' and '_'.
func validPlainKey(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

const (
	magicGeo      = "$geo"
	magicSettings = "$settings"
)

// keyKind classifies a key: 0 invalid, 1 plain, 2 $geo, 3 $settings,
// 4 $settings.<path>.
func keyKind(key string) int {
	switch {
	case key == magicGeo:
		return kindGeo
	case key == magicSettings:
		return kindSettings
	case strings.HasPrefix(key, "$"):
		if _, ok := settingsPath(key); ok {
			return kindSettingsPath
		}
		return kindInvalid
	case validPlainKey(key):
		return kindPlain
	}
	return kindInvalid
}

const (
	kindInvalid = iota
	kindPlain
	kindGeo
	kindSettings
	kindSettingsPath
)

func validGeo(lat, long float64) bool {
	return lat >= -90 && lat <= 90 && long >= -180 && long <= 180
}
