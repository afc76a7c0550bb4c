package transport

import "testing"

func TestRefuse(t *testing.T) {
	cases := []struct {
		status      int
		envelope    bool
		rateLimited bool
		want        Refusal
	}{
		{400, true, false, RefusesValues},
		{400, false, false, Pause}, // a proxy's page: not the platform's word on the values
		{401, true, false, Pause},
		{403, true, false, Pause},
		{403, true, true, Passing},
		{404, true, false, Pause},
		{404, false, false, Pause},
		{405, true, false, Pause},
		{408, false, false, Passing},
		{429, true, false, Passing},
		{0, false, false, Pause},
	}
	for _, c := range cases {
		if got := Refuse(c.status, c.envelope, c.rateLimited); got != c.want {
			t.Errorf("Refuse(%d, envelope=%v, rateLimited=%v) = %v, want %v", c.status, c.envelope, c.rateLimited, got, c.want)
		}
	}
}
