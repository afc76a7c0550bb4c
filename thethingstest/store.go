package thethingstest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"sort"
	"sync"
	"time"
)

// Record is one stored value of a resource.
type Record struct {
	// Key is the resource key.
	Key string
	// Value is the value as compact JSON.
	Value json.RawMessage
	// Datetime is the value's timestamp, UTC, millisecond precision.
	Datetime time.Time
	// Geo is the position the value was written with, nil when none.
	Geo *Geo
}

// Geo is a position attached to a value.
type Geo struct {
	Lat  float64 `json:"lat"`
	Long float64 `json:"long"`
}

// rec is the stored form of a Record.
type rec struct {
	ms  int64 // Unix milliseconds
	seq uint64
	val json.RawMessage // compact JSON
	geo *Geo
}

type dupKey struct {
	ms int64
	h  uint64
}

// series holds the values of one key ordered by (ms, seq).
type series struct {
	recs   []rec
	hashes map[dupKey]struct{}
}

// thing is the state of one activated thing.
type thing struct {
	mu       sync.RWMutex
	series   map[string]*series
	geo      *[2]float64     // [long, lat] of $geo
	settings json.RawMessage // compact JSON object of $settings, nil before any

	subsMu sync.Mutex
	subs   map[*subscription]struct{}
}

func newThing() *thing {
	return &thing{
		series: make(map[string]*series),
		subs:   make(map[*subscription]struct{}),
	}
}

var dupSeed = maphash.MakeSeed()

// insert stores r in key's series and reports whether it duplicated an
// already stored value. The caller holds th.mu for writing.
func (th *thing) insert(key string, r rec) (dup bool) {
	sr := th.series[key]
	if sr == nil {
		sr = &series{hashes: make(map[dupKey]struct{})}
		th.series[key] = sr
	}
	dk := dupKey{ms: r.ms, h: maphash.Bytes(dupSeed, r.val)}
	if _, seen := sr.hashes[dk]; seen {
		dup = sr.hasEqual(r)
	} else {
		sr.hashes[dk] = struct{}{}
	}
	n := len(sr.recs)
	if n == 0 || sr.recs[n-1].ms <= r.ms {
		sr.recs = append(sr.recs, r)
		return dup
	}
	// Out of order: insert after every record with ms <= r.ms.
	i := sort.Search(n, func(i int) bool { return sr.recs[i].ms > r.ms })
	sr.recs = append(sr.recs, rec{})
	copy(sr.recs[i+1:], sr.recs[i:])
	sr.recs[i] = r
	return dup
}

// hasEqual reports whether a record with r's datetime and value is stored.
func (sr *series) hasEqual(r rec) bool {
	i := sort.Search(len(sr.recs), func(i int) bool { return sr.recs[i].ms >= r.ms })
	for ; i < len(sr.recs) && sr.recs[i].ms == r.ms; i++ {
		if bytes.Equal(sr.recs[i].val, r.val) {
			return true
		}
	}
	return false
}

// window returns the index range [lo, hi) of records with start <= ms and
// ms < end (ms <= end when inclusive).
func (sr *series) window(start, end int64, hasStart, hasEnd, inclusive bool) (lo, hi int) {
	n := len(sr.recs)
	hi = n
	if hasStart {
		lo = sort.Search(n, func(i int) bool { return sr.recs[i].ms >= start })
	}
	if hasEnd {
		if inclusive {
			hi = sort.Search(n, func(i int) bool { return sr.recs[i].ms > end })
		} else {
			hi = sort.Search(n, func(i int) bool { return sr.recs[i].ms >= end })
		}
	}
	if hi < lo {
		hi = lo
	}
	return lo, hi
}

func toRecord(key string, r rec) Record {
	out := Record{
		Key:      key,
		Value:    append(json.RawMessage(nil), r.val...),
		Datetime: time.UnixMilli(r.ms).UTC(),
	}
	if r.geo != nil {
		g := *r.geo
		out.Geo = &g
	}
	return out
}

// StoredCount returns how many values are stored for token's key.
func (s *Server) StoredCount(token, key string) int {
	th := s.thing(token)
	if th == nil {
		return 0
	}
	th.mu.RLock()
	defer th.mu.RUnlock()
	if sr := th.series[key]; sr != nil {
		return len(sr.recs)
	}
	return 0
}

// Stored returns a copy of the values stored for token's key, newest first
// as a read returns them (values with the same datetime: most recently
// stored first). Magic keys ($geo, $settings...) keep current state, not
// history, and return nil; so do unknown tokens and keys.
func (s *Server) Stored(token, key string) []Record {
	th := s.thing(token)
	if th == nil {
		return nil
	}
	th.mu.RLock()
	defer th.mu.RUnlock()
	sr := th.series[key]
	if sr == nil {
		return nil
	}
	n := len(sr.recs)
	out := make([]Record, n)
	for i, r := range sr.recs {
		out[n-1-i] = toRecord(key, r)
	}
	return out
}

// Keys returns the sorted keys that have stored values for token (magic
// keys are not included).
func (s *Server) Keys(token string) []string {
	th := s.thing(token)
	if th == nil {
		return nil
	}
	th.mu.RLock()
	out := make([]string, 0, len(th.series))
	for k := range th.series {
		out = append(out, k)
	}
	th.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Seed stores recs under token's key directly, bypassing HTTP and without
// broadcasting; it is meant for loading large data sets fast. key must be an
// ordinary (non-magic) key; each Record's Key is ignored. A zero Datetime
// means the server clock now; datetimes are stored in UTC truncated to
// milliseconds. Values must be valid JSON; they are stored compact.
// Duplicates are counted as for HTTP writes. Nothing is stored when an
// invalid record is refused; with WithDataDir, a failure to store on disk
// may leave the first of many records stored.
func (s *Server) Seed(token, key string, recs ...Record) error {
	th := s.thing(token)
	if th == nil {
		return fmt.Errorf("thethingstest: unknown thing token %q", token)
	}
	if !validPlainKey(key) {
		return fmt.Errorf("thethingstest: invalid key %q", key)
	}
	prepared := make([]rec, len(recs))
	now := s.now()
	for i, r := range recs {
		val, err := compactJSON(r.Value)
		if err != nil {
			return fmt.Errorf("thethingstest: record %d: %w", i, err)
		}
		dt := r.Datetime
		if dt.IsZero() {
			dt = now
		}
		var g *Geo
		if r.Geo != nil {
			if !validGeo(r.Geo.Lat, r.Geo.Long) {
				return fmt.Errorf("thethingstest: record %d: geo out of range", i)
			}
			c := *r.Geo
			g = &c
		}
		prepared[i] = rec{ms: dt.UnixMilli(), val: val, geo: g}
	}
	keyJSON := mustJSON(key)
	items := make([]writeItem, len(prepared))
	for i, r := range prepared {
		items[i] = writeItem{key: key, keyJSON: keyJSON, kind: kindPlain, r: r}
	}
	// A data directory gets records of seedRecord values: replaying one
	// needs memory in proportion to its size.
	for len(items) > 0 {
		chunk := items[:min(len(items), seedRecord)]
		items = items[len(chunk):]
		dups := 0
		err := s.commit("write", func() []byte { return writeRecord(token, chunk) }, func() { dups = s.apply(th, chunk) })
		if err != nil {
			return err
		}
		s.dups.Add(int64(dups))
	}
	return nil
}

// seedRecord is how many values of a Seed go in one record of the data log.
const seedRecord = 4096

var errEmptyValue = errors.New("value is not valid JSON")

func compactJSON(v []byte) (json.RawMessage, error) {
	if len(v) == 0 {
		return nil, errEmptyValue
	}
	var buf bytes.Buffer
	buf.Grow(len(v))
	if err := json.Compact(&buf, v); err != nil {
		return nil, errEmptyValue
	}
	return buf.Bytes(), nil
}

// Settings returns a copy of token's current $settings object (numbers as
// float64, as encoding/json decodes them into any). It is nil for an
// unknown token and empty when $settings was never written.
func (s *Server) Settings(token string) map[string]any {
	th := s.thing(token)
	if th == nil {
		return nil
	}
	th.mu.RLock()
	doc := th.settings
	th.mu.RUnlock()
	out := map[string]any{}
	_ = json.Unmarshal(doc, &out) // a stored document is a valid object; nil leaves out empty
	return out
}

// Location returns token's current $geo position; ok is false for an
// unknown token or when $geo was never written.
func (s *Server) Location(token string) (g Geo, ok bool) {
	th := s.thing(token)
	if th == nil {
		return Geo{}, false
	}
	th.mu.RLock()
	defer th.mu.RUnlock()
	if th.geo == nil {
		return Geo{}, false
	}
	return Geo{Lat: th.geo[1], Long: th.geo[0]}, true
}
