package thethingstest

import (
	"net/http"
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
