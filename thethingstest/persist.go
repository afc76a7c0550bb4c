package thethingstest

import (
	"encoding/json"
	"errors"
	"fmt"
)

// WithDataDir keeps the Server's data in dir (created if missing), so that
// a Server made later on the same directory starts with it: things and
// their tokens, activation codes (and which were used), stored values,
// settings and positions. What is kept is what was acknowledged: a change
// is on disk (fsync'd) before its answer is sent, so a crash or a kill -9
// loses nothing that a client was told was stored. Counters, faults and
// subscriptions are not kept. One Server at a time may have dir open
// (ErrDataDirInUse). A write that cannot be stored on disk is answered 500,
// and so is every write after it.
//
// Without this option everything is in memory and lost on Close.
func WithDataDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return errors.New("thethingstest: WithDataDir: empty directory")
		}
		c.dataDir = dir
		return nil
	}
}

// msgStorage is the message of a change refused because the data directory
// failed.
const msgStorage = "the change could not be stored on disk"

// Record kinds of the data log and how each is replayed. A new kind of
// state adds one line here and calls commit with the same kind.
var replayers = map[string]func(s *Server, doc []byte) error{
	"thing":    (*Server).replayThing,
	"code":     (*Server).replayCode,
	"activate": (*Server).replayActivate,
	"write":    (*Server).replayWrite,
	"firmware": (*Server).replayFirmware,
}

// thingRecord is a thing added without activation.
type thingRecord struct {
	Token string `json:"token"`
}

// codeRecord is an activation code added, or used (activate).
type codeRecord struct {
	Code    string `json:"code"`
	Product string `json:"product,omitempty"`
	Token   string `json:"token,omitempty"` // activate: the new thing's token
}

// commit applies a change: with a data directory it appends the record
// doc() of kind first, under logMu so that the log keeps the order in
// which changes were applied, and returns once the record is on disk.
func (s *Server) commit(kind string, doc func() []byte, apply func()) error {
	if s.journal == nil {
		apply()
		return nil
	}
	s.logMu.Lock()
	end, err := s.journal.append(recordPayload(kind, doc()))
	if err == nil {
		apply()
	}
	s.logMu.Unlock()
	if err != nil {
		return err
	}
	return s.journal.sync(end)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs of strings are marshalled
	}
	return b
}

// replay applies one record of the data log.
func (s *Server) replay(payload []byte) error {
	kind, doc := splitPayload(payload)
	fn := replayers[kind]
	if fn == nil {
		return fmt.Errorf("unknown record kind %q", kind)
	}
	return fn(s, doc)
}

func (s *Server) replayThing(doc []byte) error {
	var r thingRecord
	if err := json.Unmarshal(doc, &r); err != nil || r.Token == "" {
		return errors.New("invalid thing record")
	}
	s.addThingLocked(r.Token)
	return nil
}

func (s *Server) replayCode(doc []byte) error {
	var r codeRecord
	if err := json.Unmarshal(doc, &r); err != nil || r.Code == "" {
		return errors.New("invalid code record")
	}
	s.codes[r.Code] = ActivationCode{Code: r.Code, ProductID: r.Product}
	s.loggedCodes[r.Code] = struct{}{}
	return nil
}

func (s *Server) replayActivate(doc []byte) error {
	var r codeRecord
	if err := json.Unmarshal(doc, &r); err != nil || r.Code == "" || r.Token == "" {
		return errors.New("invalid activate record")
	}
	delete(s.codes, r.Code)
	s.loggedCodes[r.Code] = struct{}{}
	s.addThingLocked(r.Token)
	return nil
}

// writeRecord encodes items stored for token.
func writeRecord(token string, items []writeItem) []byte {
	b := append(append([]byte(`{"token":`), mustJSON(token)...), `,"values":[`...)
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendItem(b, items[i].keyJSON, items[i].r, true)
	}
	return append(b, "]}"...)
}

// replayWrite stores a write record's values again, validated as a write
// body is: the one rule for what a value is. The record is JSON as
// writeRecord made it, compact, so its members are found by scanning
// rather than decoded: a restart replays millions of them.
func (s *Server) replayWrite(doc []byte) error {
	if !json.Valid(doc) {
		return errors.New("invalid write record")
	}
	var token, arr []byte
	eachMember(doc, func(name []byte, vs, ve int) {
		switch string(name) {
		case `"token"`:
			token = doc[vs:ve]
		case `"values"`:
			arr = doc[vs:ve]
		}
	})
	if len(token) < 2 || len(arr) < 2 || arr[0] != '[' {
		return errors.New("invalid write record")
	}
	th := s.things[unquoted(token)]
	if th == nil {
		return errors.New("write record for an unknown thing")
	}
	var values []wireValue
	for i := 1; i < len(arr) && arr[i] == '{'; {
		e := skipValue(arr, i)
		values = append(values, scanValue(arr[i:e]))
		i = e + 1 // after ','
	}
	items, msg := s.parseValues(values, 0)
	if msg != "" {
		return fmt.Errorf("invalid write record: %s", msg)
	}
	s.dups.Add(int64(s.apply(th, items)))
	return nil
}

// scanValue finds the members of one compact write item; the slices point
// into obj.
func scanValue(obj []byte) wireValue {
	var wv wireValue
	eachMember(obj, func(name []byte, vs, ve int) {
		v := json.RawMessage(obj[vs:ve])
		switch string(name) {
		case `"key"`:
			if len(v) >= 2 && v[0] == '"' {
				key := unquoted(v)
				wv.Key = &key
			}
		case `"value"`:
			wv.Value = v
		case `"geo"`:
			wv.Geo = v
		case `"datetime"`:
			wv.Datetime = v
		}
	})
	return wv
}
