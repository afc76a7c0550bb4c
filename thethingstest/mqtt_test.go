package thethingstest

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings/internal/testkit"
)

// rawMQTT is a plain MQTT client on the test server's broker, to check
// the bytes it sends and takes.
type rawMQTT struct {
	paho.Client
	t testing.TB
}

func dialMQTT(t testing.TB, url string) *rawMQTT {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID("raw-" + t.Name()).
		SetAutoReconnect(false).SetCleanSession(true).SetOrderMatters(true)
	c := &rawMQTT{paho.NewClient(o), t}
	c.wait(c.Connect())
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// wait waits for tok and requires it to succeed.
func (c *rawMQTT) wait(tok paho.Token) {
	c.t.Helper()
	require.True(c.t, tok.WaitTimeout(10*time.Second))
	require.NoError(c.t, tok.Error())
}

// subscribe subscribes to topic and returns a func that waits for its
// next payload.
func (c *rawMQTT) subscribe(topic string) (next func() string) {
	c.t.Helper()
	ch := make(chan string, 16)
	c.wait(c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { ch <- string(m.Payload()) }))
	return func() string {
		c.t.Helper()
		select {
		case s := <-ch:
			return s
		case <-time.After(10 * time.Second):
			c.t.Fatal("no MQTT message on " + topic)
			return ""
		}
	}
}

func (c *rawMQTT) publish(topic, body string) {
	c.t.Helper()
	c.wait(c.Publish(topic, 1, false, body))
}

func TestMQTTURL(t *testing.T) {
	s, err := New()
	require.NoError(t, err)
	assert.Empty(t, s.MQTTURL(), "without WithMQTT")
	assert.Error(t, s.RestartMQTT())
	e := setup(t, nil, WithMQTT())
	assert.True(t, strings.HasPrefix(e.srv.MQTTURL(), "tcp://127.0.0.1:"), e.srv.MQTTURL())
}

func TestMQTTPublishIsAWrite(t *testing.T) {
	e := setup(t, nil, WithMQTT(), WithThingTokens("tok"))
	c := dialMQTT(t, e.srv.MQTTURL())
	mqttSub := c.subscribe("v2/things/tok")
	restSub := e.subscribe("tok", "")
	assert.Equal(t, `{"status":"success","message":"subscribed"}`, restSub.mustChunk(5*time.Second))

	c.publish("v2/things/tok", `{"values":[{"key":"temp","value":21.5,"geo":{"lat":1,"long":2},"datetime":"20260102030405"}]}`)
	want := `[{"key":"temp","value":21.5,"datetime":"2026-01-02T03:04:05.000Z","geo":{"lat":1,"long":2}}]`
	// Subscribers get the stream's data array, not the published body.
	assert.JSONEq(t, want, mqttSub())
	assert.JSONEq(t, want, restSub.data(5*time.Second))
	items := e.readItems("tok", "temp", "")
	require.Len(t, items, 1)
	assert.Equal(t, 1, e.srv.StoredCount("tok", "temp"))

	// A REST write reaches MQTT subscribers as the same array.
	e.mustWrite("tok", `{"values":[{"key":"green","value":"1"}]}`)
	got := mqttSub()
	assert.True(t, strings.HasPrefix(got, `[{"key":"green","value":"1"`), got)
}

func TestMQTTDropsWhatTheRESTAPIRefuses(t *testing.T) {
	e := setup(t, nil, WithMQTT(), WithThingTokens("tok"))
	c := dialMQTT(t, e.srv.MQTTURL())
	sub := c.subscribe("v2/things/tok")
	c.publish("v2/things/unknown", `{"values":[{"key":"a","value":1}]}`)
	c.publish("v2/things/tok", `{"values":[{"key":"bad key","value":1}]}`)
	c.publish("v2/things/tok", `not json`)
	c.publish("v2/things/tok", `{"values":[{"key":"ok","value":1}]}`)
	// Messages on one connection keep their order: had the others gone
	// through, they would arrive first.
	var frame []map[string]any
	require.NoError(t, json.Unmarshal([]byte(sub()), &frame))
	require.Len(t, frame, 1)
	assert.Contains(t, frame[0], "datetime", "stamped by the server")
	delete(frame[0], "datetime")
	assert.Equal(t, []map[string]any{{"key": "ok", "value": 1.0}}, frame)
	assert.Equal(t, []string{"tok"}, e.srv.Tokens())
	assert.Equal(t, 0, e.srv.StoredCount("tok", "bad key"))
	assert.Equal(t, 1, e.srv.StoredCount("tok", "ok"))
}

func TestMQTTActivation(t *testing.T) {
	e := setup(t, nil, WithMQTT(), WithThingTokens(), WithActivationCodes(ActivationCode{Code: "C1"}))
	c := dialMQTT(t, e.srv.MQTTURL())
	answer := c.subscribe("v2/activations/C1/r4nd0m")()
	assert.Contains(t, answer, `"status":"created"`)
	tokens := e.srv.Tokens()
	require.Len(t, tokens, 1)
	assert.Contains(t, answer, `"thingToken":"`+tokens[0]+`"`)

	answer = c.subscribe("v2/activations/C1/again")()
	assert.JSONEq(t, `{"status":"error","message":"activation code not found"}`, answer)
	assert.Len(t, e.srv.Tokens(), 1)
	// The REST activation of a spent code fails too.
	r := e.post("things", `{"activationCode":"C1"}`)
	assert.Equal(t, http.StatusBadRequest, r.status)
}

func TestMQTTRestartAndSubscriptionCount(t *testing.T) {
	e := setup(t, nil, WithMQTT(), WithThingTokens("tok"))
	url := e.srv.MQTTURL()
	c := dialMQTT(t, url)
	c.subscribe("v2/things/tok")
	c.subscribe("v2/things/tok/data") // not a thing topic: not counted
	assert.Equal(t, 1, e.srv.OpenSubscriptions())
	require.NoError(t, e.srv.RestartMQTT())
	require.True(t, testkit.Eventually(t, "the broker to drop the client", func() bool { return !c.IsConnectionOpen() }))
	assert.Equal(t, 0, e.srv.OpenSubscriptions())
	assert.Equal(t, url, e.srv.MQTTURL(), "same address after a restart")
	c2 := dialMQTT(t, url)
	sub := c2.subscribe("v2/things/tok")
	e.mustWrite("tok", `{"values":[{"key":"k","value":1}]}`)
	sub()
	tok := c2.Unsubscribe("v2/things/tok")
	require.True(t, tok.WaitTimeout(10*time.Second))
	assert.Equal(t, 0, e.srv.OpenSubscriptions())
}

// Close and RestartMQTT end connections that have not sent CONNECT yet,
// and wait for every connection's goroutine, including one accepted while
// the broker closes (the race detector checks that wait).
func TestMQTTCloseEndsConnectionsBeingSetUp(t *testing.T) {
	s := setup(t, nil, WithThingTokens("tok"), WithMQTT()).srv
	addr := strings.TrimPrefix(s.MQTTURL(), "tcp://")

	// silent dials the broker and sends half a CONNECT; its read ends
	// when the broker closes the connection.
	silent := func() <-chan error {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = c.Write([]byte{0x10})
		require.NoError(t, err)
		ended := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			ended <- err
		}()
		return ended
	}
	// within runs f, failing if it does not return.
	within := func(what string, f func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatalf("%s waits for a connection that never sent CONNECT", what)
		}
	}
	ended := silent()
	within("RestartMQTT", s.RestartMQTT)
	require.Error(t, <-ended, "RestartMQTT closed the silent connection")

	ended = silent()
	var dialers sync.WaitGroup
	stop := make(chan struct{})
	for range 4 { // connections arriving while the broker closes
		dialers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, err := net.Dial("tcp", addr); err == nil {
					_, _ = c.Write([]byte{0x10})
					_ = c.Close()
				}
			}
		})
	}
	within("Close", s.Close)
	close(stop)
	dialers.Wait()
	require.Error(t, <-ended, "Close closed the silent connection")
}

// The listener's Close ends its connections itself and never calls the
// broker's close callback: that callback lists the clients under a read
// lock it takes twice, which deadlocks against a client detaching at the
// same moment (seen as a hung Close in a test run). The deadlock cannot be
// provoked on demand, so this pins the rule that avoids it.
func TestMQTTListenerCloseEndsConnectionsItself(t *testing.T) {
	l := newTCPListener("t", "127.0.0.1:0")
	require.NoError(t, l.Init(nil))
	served := make(chan struct{})
	go func() {
		defer close(served)
		l.Serve(func(_ string, c net.Conn) error {
			_, err := c.Read(make([]byte, 1)) // a client's read loop
			return err
		})
	}()
	c, err := net.Dial("tcp", l.Address())
	require.NoError(t, err)
	defer c.Close()
	require.True(t, testkit.Eventually(t, "the connection to be served", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.conns) == 1
	}))
	l.Close(func(string) { t.Error("Close called the broker's callback") })
	<-served
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err)
	assert.NotErrorIs(t, err, os.ErrDeadlineExceeded, "Close closed the connection")
}
