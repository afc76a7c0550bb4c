// Package version orders firmware versions, the one rule the SDK's
// firmware calls and package ota share: two versions compare as numbers
// when both parse as numbers ("9" < "10", as the platform usually stores
// them), else by semver.org precedence when both are semantic versions
// with an optional leading "v" ("v1.2.0-rc.1" < "1.2.0"), else as text.
package version

import (
	"cmp"
	"math"
	"strconv"
	"strings"
)

// Compare returns -1, 0 or +1 as a is older than, as old as, or newer
// than b.
func Compare(a, b string) int {
	if x, ok := number(a); ok {
		if y, ok := number(b); ok {
			return cmp.Compare(x, y)
		}
	}
	if x, ok := parseSemver(a); ok {
		if y, ok := parseSemver(b); ok {
			return x.compare(y)
		}
	}
	return strings.Compare(a, b)
}

// number parses a finite decimal number.
func number(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

type semver struct {
	core [3]uint64
	pre  []string // pre-release identifiers; nil for a release
}

// parseSemver reads MAJOR.MINOR.PATCH[-PRE][+BUILD] with an optional
// leading v; build metadata is ignored, as precedence requires.
func parseSemver(s string) (semver, bool) {
	var v semver
	s = strings.TrimPrefix(s, "v")
	s, _, _ = strings.Cut(s, "+")
	s, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		if !numeric(p) || len(p) > 1 && p[0] == '0' {
			return v, false
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return v, false
		}
		v.core[i] = n
	}
	if hasPre {
		v.pre = strings.Split(pre, ".")
		for _, id := range v.pre {
			if id == "" || strings.Trim(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") != "" {
				return v, false
			}
		}
	}
	return v, true
}

func numeric(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func (a semver) compare(b semver) int {
	for i := range a.core {
		if c := cmp.Compare(a.core[i], b.core[i]); c != 0 {
			return c
		}
	}
	switch {
	case a.pre == nil && b.pre == nil:
		return 0
	case a.pre == nil:
		return 1 // a release is newer than its pre-releases
	case b.pre == nil:
		return -1
	}
	for i := 0; i < len(a.pre) && i < len(b.pre); i++ {
		x, y := a.pre[i], b.pre[i]
		xn, yn := numeric(x), numeric(y)
		var c int
		switch {
		case xn && yn:
			c = cmp.Compare(len(strings.TrimLeft(x, "0")), len(strings.TrimLeft(y, "0")))
			if c == 0 {
				c = strings.Compare(strings.TrimLeft(x, "0"), strings.TrimLeft(y, "0"))
			}
		case xn:
			c = -1 // numeric identifiers are older than alphanumeric ones
		case yn:
			c = 1
		default:
			c = strings.Compare(x, y)
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.pre), len(b.pre))
}
