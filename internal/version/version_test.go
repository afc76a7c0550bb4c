package version

import "testing"

func TestCompare(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"9", "10", -1},    // numbers, not text
		{"1.5", "1.10", 1}, // numbers: 1.5 > 1.1
		{"2", "2.0", 0},    // the same number
		{"v1.2.3", "1.2.3", 0},
		{"1.9.0", "1.10.0", -1},
		{"1.0.0-rc.1", "1.0.0", -1},
		{"1.0.0-alpha", "1.0.0-alpha.1", -1},
		{"1.0.0-alpha.1", "1.0.0-alpha.beta", -1},
		{"1.0.0-beta.2", "1.0.0-beta.11", -1},
		{"1.0.0-rc.1", "1.0.0-beta.11", 1},
		{"1.0.0+build.5", "1.0.0+build.7", 0},
		{"v2.0.0", "v10.0.0", -1},
		{"01.2.3", "1.2.3", -1}, // not semver (leading zero): text
		{"beta", "alpha", 1},    // text
		{"NaN", "1", 1},         // NaN is no number: text
	} {
		if got := Compare(c.a, c.b); got != c.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := Compare(c.b, c.a); got != -c.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}
