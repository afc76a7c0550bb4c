package thethingstest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewServerMakesUpAToken(t *testing.T) {
	var url string
	t.Run("server", func(t *testing.T) {
		srv := NewServer(t)
		url = srv.URL()
		assert.True(t, strings.HasPrefix(url, "http://127.0.0.1:"), url)
		assert.True(t, strings.HasSuffix(url, "/v2/"), url)
		require.Len(t, srv.Tokens(), 1)
		assert.Regexp(t, urlSafe43, srv.Tokens()[0])
		resp, err := http.Get(url + "utils/date?thingToken=" + srv.Tokens()[0])
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		srv.AddThing("later")
		assert.Equal(t, []string{srv.Tokens()[0], "later"}, srv.Tokens())
	})
	// The subtest's cleanup closed the server.
	_, err := http.Get(url)
	assert.Error(t, err, "closed by the test's cleanup")

	srv := NewServer(t, WithThingTokens("b", "a"))
	assert.Equal(t, []string{"b", "a"}, srv.Tokens(), "seeded tokens in the order given, none made up")
	assert.Empty(t, NewServer(t, WithThingTokens()).Tokens(), "WithThingTokens() seeds no thing")
}

// fatalTB records Fatal instead of stopping the goroutine.
type fatalTB struct {
	testing.TB
	fatal string
}

func (f *fatalTB) Fatal(args ...any) {
	for _, a := range args {
		f.fatal += a.(error).Error()
	}
}
func (f *fatalTB) Helper() {}

func TestInvalidOptions(t *testing.T) {
	for name, opt := range map[string]Option{
		"empty token":        WithThingTokens("ok", ""),
		"empty code":         WithActivationCodes(ActivationCode{}),
		"nil clock":          WithClock(nil),
		"zero body":          WithMaxBodyBytes(0),
		"negative body":      WithMaxBodyBytes(-1),
		"negative keepalive": WithDefaultKeepAlive(-time.Second),
		"negative latency":   WithFaults(Faults{Latency: -1}),
		"negative 503":       WithFaults(Faults{Every503: -2}),
	} {
		s, err := New(WithThingTokens("x"), opt)
		assert.Error(t, err, name)
		assert.Nil(t, s, name)
		if err != nil {
			assert.True(t, strings.HasPrefix(err.Error(), "thethingstest: "), err.Error())
		}
	}
	tb := &fatalTB{TB: t}
	assert.Nil(t, NewServer(tb, WithMaxBodyBytes(-1)))
	assert.Contains(t, tb.fatal, "WithMaxBodyBytes(-1)")
	_, err := New(nil, WithThingTokens("x"))
	assert.NoError(t, err, "a nil option is ignored")
}

// BenchmarkNewServer is what a test pays for its own server: start on
// loopback, answer a first request (a new connection), close. The baseline
// is httptest.NewServer with a handler that answers the same body.
func BenchmarkNewServer(b *testing.B) {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func(b *testing.B, url string) {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatal(resp.Status)
		}
		tr.CloseIdleConnections()
	}
	b.Run("thethingstest", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s, err := New()
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start(); err != nil {
				b.Fatal(err)
			}
			get(b, s.URL()+"utils/date?thingToken="+s.Tokens()[0])
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("httptest", func(b *testing.B) {
		body := []byte(`{"date":"2024-05-01T10:30:00.000Z","values":[{"value":"2024-05-01T10:30:00.000Z"}]}`)
		b.ReportAllocs()
		for b.Loop() {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(body)
			}))
			get(b, ts.URL+"/v2/utils/date")
			ts.Close()
		}
	})
}
