package thethingstest

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// state is everything a data directory keeps, as the ground truth shows it.
type state struct {
	Tokens     []string
	Stored     map[string][]Record
	Settings   map[string]map[string]any
	Locations  map[string]Geo
	Duplicates int
}

func stateOf(s *Server, keys ...string) state {
	st := state{Tokens: s.Tokens(), Stored: map[string][]Record{}, Settings: map[string]map[string]any{}, Locations: map[string]Geo{}, Duplicates: s.Duplicates()}
	for _, tok := range st.Tokens {
		for _, k := range keys {
			if recs := s.Stored(tok, k); recs != nil {
				st.Stored[tok+"/"+k] = recs
			}
		}
		st.Settings[tok] = s.Settings(tok)
		if g, ok := s.Location(tok); ok {
			st.Locations[tok] = g
		}
	}
	return st
}

func TestDataDirKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)}
	e := setup(t, nil, WithDataDir(dir), WithThingTokens("tok"), WithClock(clk.Now),
		WithActivationCodes(ActivationCode{Code: "used"}, ActivationCode{Code: "kept", ProductID: "p"}))
	e.mustWrite("tok", `{"values":[{"key":"t","value":21.5},{"key":"t","value":{"a":[1,"<&>"]},"datetime":"2024-05-01T09:00:00.123Z","geo":{"lat":41.39,"long":2.17}}]}`)
	e.mustWrite("tok", `{"values":[{"key":"t","value":21.5},{"key":"t","value":22}]}`) // same ms: order kept; one duplicate
	e.mustWrite("tok", `{"values":[{"key":"$geo","value":null,"geo":{"lat":-33.86,"long":151.21}},{"key":"$settings","value":{"mode":"eco","n":12345678901234567890}},{"key":"$settings.net.ssid","value":"x"}]}`)
	e.mustWrite("tok", `{"values":[{"key":"h","value":"dropped"}]}`+"")
	r := e.post("things/tok?store=false", `{"values":[{"key":"h","value":"not stored"}]}`)
	require.Equal(t, http.StatusCreated, r.status)
	r = e.post("things", `{"activationCode":"used"}`)
	require.Equal(t, http.StatusCreated, r.status, string(r.body))
	var act struct{ ThingToken string }
	require.NoError(t, json.Unmarshal(r.body, &act))
	e.mustWrite(act.ThingToken, `{"values":[{"key":"t","value":1}]}`)
	seeded := make([]Record, seedRecord+10)
	for i := range seeded {
		seeded[i] = Record{Value: json.RawMessage(`7`), Datetime: time.UnixMilli(int64(i % 100)).UTC()}
	}
	require.NoError(t, e.srv.Seed("tok", "seeded", seeded...))
	e.srv.AddThing("added")
	before := stateOf(e.srv, "t", "h", "seeded")
	require.Equal(t, 1+seedRecord+10-100, before.Duplicates)
	require.Equal(t, seedRecord+10, len(before.Stored["tok/seeded"]))
	require.NoError(t, e.srv.Close())

	// Started again with the same options: the codes of the options are
	// not handed out again.
	e2 := setup(t, nil, WithDataDir(dir), WithThingTokens("tok"),
		WithActivationCodes(ActivationCode{Code: "used"}, ActivationCode{Code: "kept", ProductID: "p"}))
	assert.Equal(t, before, stateOf(e2.srv, "t", "h", "seeded"))
	assert.Equal(t, []string{"tok", act.ThingToken, "added"}, e2.srv.Tokens())
	assert.JSONEq(t, `{"mode":"eco","n":12345678901234567890,"net":{"ssid":"x"}}`, string(e2.readItems("tok", "$settings", "")[0].Value), "numbers exact")
	assert.Equal(t, []ActivationCode{{Code: "kept", ProductID: "p"}}, e2.srv.ActivationCodes())
	assert.Equal(t, http.StatusBadRequest, e2.post("things", `{"activationCode":"used"}`).status)
	assert.Equal(t, http.StatusCreated, e2.post("things", `{"activationCode":"kept","productId":"p"}`).status)
	assert.Empty(t, e2.srv.ActivationCodes())
	e2.mustWrite("tok", `{"values":[{"key":"t","value":"after"}]}`)
	require.NoError(t, e2.srv.Close())

	// Without options: no token is made up when the directory has things.
	s3, err := New(WithDataDir(dir))
	require.NoError(t, err)
	defer s3.Close()
	assert.Len(t, s3.Tokens(), 4)
	assert.Equal(t, len(before.Stored["tok/t"])+1, s3.StoredCount("tok", "t"))
}

func TestDataDirUsedByOneServerAtATime(t *testing.T) {
	dir := t.TempDir()
	s, err := New(WithDataDir(dir))
	require.NoError(t, err)
	_, err = New(WithDataDir(dir))
	assert.ErrorIs(t, err, ErrDataDirInUse)
	require.NoError(t, s.Close())
	s2, err := New(WithDataDir(dir))
	require.NoError(t, err)
	assert.Equal(t, s.Tokens(), s2.Tokens(), "the made-up token is kept")
	require.NoError(t, s2.Close())
	_, err = New(WithDataDir(""))
	assert.Error(t, err)
}

// TestDataDirTornTail: a crash in the middle of appending leaves part of a
// record; it was never acknowledged, and opening drops it.
func TestDataDirTornTail(t *testing.T) {
	// lastRecord returns the offset of the last record in a log.
	lastRecord := func(t *testing.T, b []byte) int {
		off, last := len(logMagic), -1
		for off+logHeader <= len(b) {
			n := int(b[off]) | int(b[off+1])<<8 | int(b[off+2])<<16 | int(b[off+3])<<24
			last = off
			off += logHeader + n
		}
		require.Equal(t, len(b), off, "a whole log")
		return last
	}
	for name, tear := range map[string]func(b []byte) []byte{
		"cut in the payload": func(b []byte) []byte { return b[:len(b)-3] },
		"cut in the header":  func(b []byte) []byte { return b[:len(b)-(len(b)-lastRecord(t, b))+5] },
		"bad checksum":       func(b []byte) []byte { b[len(b)-2] ^= 0xff; return b },
		"length past the end": func(b []byte) []byte {
			b[lastRecord(t, b)] = 0xff
			return b
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			e := setup(t, nil, WithDataDir(dir), WithThingTokens("tok"))
			e.mustWrite("tok", `{"values":[{"key":"k","value":1}]}`)
			e.mustWrite("tok", `{"values":[{"key":"k","value":2}]}`)
			require.NoError(t, e.srv.Close())
			path := filepath.Join(dir, logName)
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			cut := lastRecord(t, b)
			require.NoError(t, os.WriteFile(path, tear(b), 0o600))

			e2 := setup(t, nil, WithDataDir(dir))
			assert.Equal(t, 1, e2.srv.StoredCount("tok", "k"), "the torn record is dropped")
			fi, err := os.Stat(path)
			require.NoError(t, err)
			assert.Equal(t, int64(cut), fi.Size(), "and cut off")
			e2.mustWrite("tok", `{"values":[{"key":"k","value":3}]}`)
			require.NoError(t, e2.srv.Close())
			s3, err := New(WithDataDir(dir))
			require.NoError(t, err)
			defer s3.Close()
			assert.Equal(t, 2, s3.StoredCount("tok", "k"))
		})
	}
}

func TestDataDirRefusesWhatItCannotRead(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, logName), []byte("something else entirely"), 0o600))
	_, err := New(WithDataDir(dir))
	assert.ErrorContains(t, err, "not a thethingstest data log")

	dir = t.TempDir()
	s, err := New(WithDataDir(dir))
	require.NoError(t, err)
	s.logMu.Lock()
	_, err = s.journal.append(recordPayload("hologram", []byte(`{}`)))
	s.logMu.Unlock()
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = New(WithDataDir(dir))
	assert.ErrorContains(t, err, `unknown record kind "hologram"`, "a record of a newer version is not skipped")
}

func TestDataDirFailureAnswers500(t *testing.T) {
	e := setup(t, nil, WithDataDir(t.TempDir()), WithThingTokens("tok"), WithActivationCodes(ActivationCode{Code: "c"}))
	e.mustWrite("tok", `{"values":[{"key":"k","value":1}]}`)
	require.NoError(t, e.srv.journal.f.Close()) // the disk goes away
	for _, c := range []struct{ path, body string }{
		{"things/tok", `{"values":[{"key":"k","value":2}]}`},
		{"things/tok", `{"values":[{"key":"k","value":3}]}`},
		{"things", `{"activationCode":"c"}`},
	} {
		r := e.post(c.path, c.body)
		assert.Equal(t, http.StatusInternalServerError, r.status, c.path)
		assert.Contains(t, string(r.body), msgStorage)
	}
	assert.Equal(t, 1, e.srv.StoredCount("tok", "k"), "nothing stored that was not acknowledged")
	assert.Error(t, e.srv.Seed("tok", "k", Record{Value: json.RawMessage(`1`), Datetime: time.Now()}))
	err := e.srv.Close()
	assert.True(t, errors.Is(err, os.ErrClosed), "%v", err)
}

// TestDataDirKeepsOrderUnderConcurrency: values written at the same
// millisecond read newest-inserted first; the log must replay them in the
// order they were applied, whatever the interleaving of writers.
func TestDataDirKeepsOrderUnderConcurrency(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)} // every value at the same ms
	e := setup(t, nil, WithDataDir(dir), WithThingTokens("a", "b"), WithClock(clk.Now))
	var failed atomic.Int64 // require may not stop the test from these goroutines
	parallel(200, 8, func(i int) {
		tok := []string{"a", "b"}[i%2]
		r, err := e.try("POST", "things/"+tok, `{"values":[{"key":"k","value":`+strconv.Itoa(i)+`},{"key":"$settings.last","value":`+strconv.Itoa(i)+`}]}`,
			"Content-Type", "application/json")
		if err != nil || r.status != http.StatusCreated {
			failed.Add(1)
		}
	})
	require.Zero(t, failed.Load(), "writes not stored")
	before := stateOf(e.srv, "k")
	require.NoError(t, e.srv.Close())
	s2, err := New(WithDataDir(dir))
	require.NoError(t, err)
	defer s2.Close()
	assert.Equal(t, before, stateOf(s2, "k"))
}

func TestDataDirKeepsFirmwares(t *testing.T) {
	dir := t.TempDir()
	s, err := New(WithDataDir(dir), WithThingTokens("tok"))
	require.NoError(t, err)
	id := s.AddFirmware("2", []byte("firmware two"))
	assert.Equal(t, id, s.AddFirmware("2", []byte("firmware two")), "the same file again keeps its id")
	other := s.AddFirmware("2", []byte("rebuilt"))
	assert.NotEqual(t, id, other, "another file of the same version is another firmware")
	require.NoError(t, s.Close())

	s2, err := New(WithDataDir(dir))

	require.NoError(t, err)
	defer s2.Close()
	f, ok := s2.fw.get(id)
	require.True(t, ok, "firmware kept across the restart")
	assert.Equal(t, "2", f.Version)
	assert.Equal(t, []byte("firmware two"), f.Data)
	assert.Equal(t, id, s2.AddFirmware("2", []byte("firmware two")), "an emulator restarted with the same -firmware adds nothing")
	assert.Len(t, s2.fw.all(), 2)
}
