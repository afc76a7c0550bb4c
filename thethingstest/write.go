package thethingstest

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// wireValue is one element of a write request's "values".
type wireValue struct {
	Key      *string         `json:"key"`
	Value    json.RawMessage `json:"value"`
	Geo      json.RawMessage `json:"geo"`
	Datetime json.RawMessage `json:"datetime"`
}

// writeItem is a validated element of a write request.
type writeItem struct {
	key     string
	keyJSON []byte
	kind    int
	r       rec        // ms, compact value, geo
	point   [2]float64 // $geo: [long, lat]
	path    []string   // $settings.<path>
}

func isNull(b json.RawMessage) bool { return len(b) == 0 || string(b) == "null" }

// decodeWrite decodes a write body's values in one pass; only when that
// fails does it walk the body element by element to name what is wrong.
func decodeWrite(body []byte) (values []wireValue, msg string) {
	var all struct {
		Values []wireValue `json:"values"`
	}
	if json.Unmarshal(body, &all) == nil && all.Values != nil {
		if len(all.Values) == 0 {
			return nil, `"values" must not be empty`
		}
		for i, wv := range all.Values {
			if wv.Key == nil && wv.Value == nil && wv.Geo == nil && wv.Datetime == nil {
				return nil, fmt.Sprintf("values[%d] must be an object with key and value", i)
			}
		}
		return all.Values, ""
	}
	var req struct {
		Values json.RawMessage `json:"values"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, "invalid JSON body"
	}
	if isNull(req.Values) {
		return nil, `"values" is required`
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(req.Values, &raw); err != nil {
		return nil, `"values" must be an array`
	}
	for i, rv := range raw {
		var wv wireValue
		if isNull(rv) || rv[0] != '{' || json.Unmarshal(rv, &wv) != nil {
			return nil, fmt.Sprintf("values[%d] must be an object with key and value", i)
		}
	}
	return nil, "invalid JSON body"
}

// parseWrite validates a whole write body; msg is the 400 message on error.
func (s *Server) parseWrite(body []byte) (items []writeItem, msg string) {
	values, msg := decodeWrite(body)
	if msg != "" {
		return nil, msg
	}
	return s.parseValues(values, s.now().UnixMilli())
}

// parseValues validates decoded values; now is the datetime of those
// without one.
func (s *Server) parseValues(values []wireValue, now int64) (items []writeItem, msg string) {
	items = make([]writeItem, len(values))
	for i, wv := range values {
		if wv.Key == nil {
			return nil, fmt.Sprintf("values[%d]: key is required", i)
		}
		it := &items[i]
		it.key = *wv.Key
		it.kind = keyKind(it.key)
		if it.kind == kindInvalid && tooDeepPath(it.key) {
			return nil, fmt.Sprintf("values[%d]: a $settings path has at most %d segments", i, maxDepth)
		}
		if it.kind == kindInvalid {
			return nil, fmt.Sprintf("invalid key %s: only letters, digits, \".\", \"-\" and \"_\" are allowed (or a magic key such as $geo, $settings, $settings.name)", quoted(it.key))
		}
		if it.kind == kindPlain {
			it.keyJSON = append(append(append(make([]byte, 0, len(it.key)+2), '"'), it.key...), '"')
		} else {
			it.keyJSON, _ = json.Marshal(it.key)
		}
		if wv.Value == nil {
			return nil, fmt.Sprintf("values[%d] (key %s): value is required", i, quoted(it.key))
		}
		val, err := compactJSON(wv.Value)
		if err != nil {
			return nil, fmt.Sprintf("values[%d] (key %s): invalid value", i, quoted(it.key))
		}
		if jsonDepth(val) > maxDepth {
			return nil, fmt.Sprintf("values[%d] (key %s): value nested deeper than %d levels", i, it.key, maxDepth)
		}
		it.r.val = val
		if !isNull(wv.Geo) {
			lat, long, ok := parseGeo(wv.Geo)
			if !ok {
				return nil, fmt.Sprintf("values[%d] (key %s): geo must be {\"lat\":number,\"long\":number}", i, quoted(it.key))
			}
			if !validGeo(lat, long) {
				return nil, fmt.Sprintf("values[%d] (key %s): geo out of range (lat -90..90, long -180..180)", i, quoted(it.key))
			}
			it.r.geo = &Geo{Lat: lat, Long: long}
		}
		it.r.ms = now
		if !isNull(wv.Datetime) {
			if wv.Datetime[0] != '"' { // valid JSON: a string or not
				return nil, fmt.Sprintf("values[%d] (key %s): datetime must be a string", i, quoted(it.key))
			}
			ds := unquoted(wv.Datetime)
			ms, err := parseDatetime(ds)
			if err != nil {
				return nil, fmt.Sprintf("values[%d] (key %s): invalid datetime %s (use YYYYMMDDHHmmss or ISO 8601)", i, quoted(it.key), quoted(ds))
			}
			it.r.ms = ms
		}
		if m := s.parseMagic(it); m != "" {
			return nil, fmt.Sprintf("values[%d] (key %s): %s", i, quoted(it.key), m)
		}
	}
	return items, ""
}

// parseGeo decodes {"lat":..,"long":..}. Coordinates may be numbers or
// numeric strings: the platform's Python library sends them as strings.
func parseGeo(b json.RawMessage) (lat, long float64, ok bool) {
	var g struct {
		Lat  json.RawMessage `json:"lat"`
		Long json.RawMessage `json:"long"`
	}
	if json.Unmarshal(b, &g) != nil {
		return 0, 0, false
	}
	lat, okLat := parseCoord(g.Lat)
	long, okLong := parseCoord(g.Long)
	return lat, long, okLat && okLong
}

func parseCoord(b json.RawMessage) (float64, bool) {
	if isNull(b) {
		return 0, false
	}
	var f float64
	if json.Unmarshal(b, &f) == nil {
		return f, true
	}
	var s string
	if json.Unmarshal(b, &s) != nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// parseMagic validates the value of a magic key.
func (s *Server) parseMagic(it *writeItem) string {
	switch it.kind {
	case kindGeo:
		switch {
		case isNull(it.r.val):
			if it.r.geo == nil {
				return "a null $geo value needs a geo attribute"
			}
			it.point = [2]float64{it.r.geo.Long, it.r.geo.Lat}
		case it.r.val[0] == '[':
			var c []float64
			if json.Unmarshal(it.r.val, &c) != nil || len(c) != 2 {
				return "$geo must be [long, lat]"
			}
			it.point = [2]float64{c[0], c[1]}
		default:
			var p struct {
				Type        string    `json:"type"`
				Coordinates []float64 `json:"coordinates"`
			}
			if json.Unmarshal(it.r.val, &p) != nil || p.Type != "Point" || len(p.Coordinates) != 2 {
				return `$geo must be a GeoJSON {"type":"Point","coordinates":[long,lat]}`
			}
			it.point = [2]float64{p.Coordinates[0], p.Coordinates[1]}
		}
		if !validGeo(it.point[1], it.point[0]) {
			return "$geo out of range (lat -90..90, long -180..180)"
		}
	case kindSettings:
		if it.r.val[0] != '{' {
			return "$settings must be an object"
		}
	case kindSettingsPath:
		it.path, _ = settingsPath(it.key)
	}
	return ""
}

// parseBool parses the store and broadcast switches.
func parseBool(q map[string][]string, name string) (bool, bool) {
	v, ok := q[name]
	if !ok {
		return true, true
	}
	switch v[0] {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// handleWrite serves POST /v2/things/{token}.
func (s *Server) handleWrite(w http.ResponseWriter, r *http.Request, token string) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	f := s.Faults()
	n := s.writes.Add(1)
	drop := f.DropEvery > 0 && n%int64(f.DropEvery) == 0
	if drop && !f.DropStores {
		s.drop(w)
		return
	}
	fail := !drop && f.StoreThenFailEvery > 0 && n%int64(f.StoreThenFailEvery) == 0
	status, resp := s.write(r, token, body)
	switch {
	case drop:
		s.drop(w)
	case fail:
		answerStoreThenFail(w, f)
	default:
		writeJSON(w, status, resp)
	}
}

var (
	respCreated = []byte(`{"status":"created"}`)
	respLegacy  = []byte(`{"status":"Success","message":"Created"}`)
)

func (s *Server) write(r *http.Request, token string, body []byte) (int, []byte) {
	errResp := func(status int, msg string, code bool) (int, []byte) {
		eb := errorBody{Status: "error", Message: msg}
		if code {
			eb.Code = status
		}
		b, _ := json.Marshal(eb)
		return status, b
	}
	th := s.thing(token)
	if th == nil {
		return errResp(http.StatusNotFound, msgThingNotFound, false)
	}
	q := r.URL.Query()
	store, ok := parseBool(q, "store")
	if !ok {
		return errResp(http.StatusBadRequest, `invalid "store": use true or false`, true)
	}
	broadcast, ok := parseBool(q, "broadcast")
	if !ok {
		return errResp(http.StatusBadRequest, `invalid "broadcast": use true or false`, true)
	}
	items, msg := s.parseWrite(body)
	if msg != "" {
		return errResp(http.StatusBadRequest, msg, true)
	}
	if store {
		dups := 0
		err := s.commit("write", func() []byte { return writeRecord(token, items) }, func() { dups = s.apply(th, items) })
		if err != nil {
			return errResp(http.StatusInternalServerError, msgStorage, true)
		}
		s.dups.Add(int64(dups))
	}
	if broadcast {
		buf := make([]byte, 0, 64*len(items))
		buf = append(buf, '[')
		for i := range items {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendItem(buf, items[i].keyJSON, items[i].r, s.cfg.streamDatetime)
		}
		buf = append(buf, ']')
		th.broadcast(buf)
		s.publishMQTT(token, buf)
	}
	if s.cfg.legacyWrite {
		return http.StatusCreated, respLegacy
	}
	return http.StatusCreated, respCreated
}

// apply stores validated items and returns how many duplicated a stored
// value.
func (s *Server) apply(th *thing, items []writeItem) (dups int) {
	th.mu.Lock()
	defer th.mu.Unlock()
	for i := range items {
		it := &items[i]
		switch it.kind {
		case kindPlain:
			it.r.seq = s.seq.Add(1)
			if th.insert(it.key, it.r) {
				dups++
			}
		case kindGeo:
			p := it.point
			th.geo = &p
		case kindSettings:
			th.settings = it.r.val
		case kindSettingsPath:
			th.settings = setPath(th.settings, it.path, it.r.val)
		}
	}
	return dups
}

// drop closes the connection without answering.
func (s *Server) drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// quoted quotes s for an error message, cut to its first 64 bytes: a
// request cannot make its answer as large as itself.
func quoted(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "..."
	}
	return strconv.Quote(s)
}
