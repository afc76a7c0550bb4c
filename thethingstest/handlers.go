package thethingstest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bodies shown verbatim by the platform's documentation.
const (
	msgThingNotFound    = "Thing token doesn't exist"
	msgResourceNotFound = "resource not found"
	msgCodeNotFound     = "activation code not found"
)

type errorBody struct {
	Status  string `json:"status"`
	Code    int    `json:"code,omitempty"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeValue(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"status":"error","code":500,"message":"internal error"}`)
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, b)
}

// writeError answers the platform's error envelope with "code".
func writeError(w http.ResponseWriter, status int, msg string) {
	writeValue(w, status, errorBody{Status: "error", Code: status, Message: msg})
}

// writeDocError answers {"status":"error","message":msg}, the shape the
// documentation prints for activation, read and subscribe errors.
func writeDocError(w http.ResponseWriter, status int, msg string) {
	writeValue(w, status, errorBody{Status: "error", Message: msg})
}

// recoverer turns a panic into a 500 JSON answer (a last resort).
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { //nolint:errorlint // sentinel identity
					panic(v)
				}
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// route dispatches a request; see the package documentation for the paths.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	if ctl, ok := strings.CutPrefix(p, ControlPrefix); ok && s.cfg.control {
		s.handleControl(w, r, ctl)
		return
	}
	rest, ok := strings.CutPrefix(p, "/v2")
	if !ok {
		s.answerOther(w, r, http.StatusNotFound, "")
		return
	}
	if rest == "" || rest == "/" {
		s.dispatch(w, r, RouteRoot, "GET", s.handleRoot)
		return
	}
	segs := strings.Split(strings.TrimPrefix(rest, "/"), "/")
	// Allow one trailing slash.
	if len(segs) > 1 && segs[len(segs)-1] == "" {
		segs = segs[:len(segs)-1]
	}
	for i, sg := range segs {
		u, err := url.PathUnescape(sg)
		if err != nil {
			s.answerOther(w, r, http.StatusNotFound, "")
			return
		}
		segs[i] = u
	}
	switch {
	case len(segs) == 1 && segs[0] == "things":
		s.dispatch(w, r, RouteActivate, "POST", s.handleActivate)
		return
	case len(segs) == 2 && segs[0] == "things" && segs[1] != "":
		token := segs[1]
		switch r.Method {
		case http.MethodGet:
			s.routes[RouteSubscribe].Add(1)
			s.handleSubscribe(w, r, token)
		case http.MethodPost:
			s.dispatch(w, r, RouteWrite, "POST", func(w http.ResponseWriter, r *http.Request) {
				s.handleWrite(w, r, token)
			})
		default:
			s.answerOther(w, r, http.StatusMethodNotAllowed, "GET, POST")
		}
		return
	case len(segs) == 4 && segs[0] == "things" && segs[1] != "" && segs[2] == "resources" && segs[3] != "":
		token, key := segs[1], segs[3]
		s.dispatch(w, r, RouteRead, "GET", func(w http.ResponseWriter, r *http.Request) {
			s.handleRead(w, r, token, key)
		})
		return
	case s.routeFirmware(w, r, segs):
		return
	case len(segs) == 2 && segs[0] == "utils" && segs[1] == "date":
		s.dispatch(w, r, RouteDate, "GET", s.handleDate)
		return
	}
	s.answerOther(w, r, http.StatusNotFound, "")
}

// dispatch counts a non-stream request on route, applies the request
// faults and calls h when method matches (405 otherwise).
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, route Route, method string, h http.HandlerFunc) {
	if r.Method != method {
		s.answerOther(w, r, http.StatusMethodNotAllowed, method)
		return
	}
	s.routes[route].Add(1)
	if s.requestFaults(w, r) {
		return
	}
	h(w, r)
}

// answerOther answers unknown paths (404) and wrong methods (405, with
// allow as the Allow header), counted as route "other".
func (s *Server) answerOther(w http.ResponseWriter, r *http.Request, status int, allow string) {
	s.routes[RouteOther].Add(1)
	if s.requestFaults(w, r) {
		return
	}
	if status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", allow)
		writeError(w, status, "method not allowed")
		return
	}
	writeError(w, status, "not found")
}

// requestFaults applies Every503, Every429 and Latency to a non-stream
// request; it reports whether the request was answered.
func (s *Server) requestFaults(w http.ResponseWriter, r *http.Request) bool {
	f := s.Faults()
	n := s.nonStream.Add(1)
	if f.DropBeforeBodyEvery > 0 && n%int64(f.DropBeforeBodyEvery) == 0 {
		s.drop(w)
		return true
	}
	status := 0
	switch {
	case f.Every503 > 0 && n%int64(f.Every503) == 0:
		status = http.StatusServiceUnavailable
	case f.Every429 > 0 && n%int64(f.Every429) == 0:
		status = http.StatusTooManyRequests
	}
	s.sleep(r, f.Latency)
	if status == 0 {
		return false
	}
	if !f.NoRetryAfter {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(cmp.Or(f.RetryAfter, time.Second))))
	}
	writeError(w, status, http.StatusText(status))
	return true
}

func (s *Server) handleRoot(w http.ResponseWriter, _ *http.Request) {
	writeError(w, http.StatusUnauthorized, "Invalid session token")
}

// readBody enforces the JSON content type and the body size limit; it
// answers and returns ok false on failure.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			return nil, false
		}
	}
	if r.ContentLength > s.cfg.maxBody {
		writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return nil, false
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength)) // at most maxBody: checked above
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.cfg.maxBody))
	body := buf.Bytes()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
		} else {
			writeError(w, http.StatusBadRequest, "could not read request body")
		}
		return nil, false
	}
	return body, true
}

func (s *Server) handleActivate(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		ActivationCode *string `json:"activationCode"`
		ProductID      *string `json:"productId"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body")
		return
	}
	if req.ActivationCode == nil || *req.ActivationCode == "" {
		writeError(w, http.StatusBadRequest, "activationCode is required")
		return
	}
	product := ""
	if req.ProductID != nil {
		product = *req.ProductID
	}
	token, id, err := s.activate(*req.ActivationCode, product, req.ProductID != nil)
	if errors.Is(err, errCodeNotFound) {
		writeDocError(w, http.StatusBadRequest, msgCodeNotFound)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, msgStorage)
		return
	}
	writeValue(w, http.StatusCreated, struct {
		Status     string `json:"status"`
		Message    string `json:"message"`
		ThingToken string `json:"thingToken"`
		ThingID    string `json:"thingId"`
	}{"created", "thing activated", token, id})
}

func (s *Server) handleDate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if tok := q.Get("thingToken"); tok != "" && s.thing(tok) == nil {
		writeDocError(w, http.StatusNotFound, msgThingNotFound)
		return
	}
	now := s.now()
	switch f := strings.ToLower(q.Get("format")); f {
	case "", "utc":
		v := now.UTC().Format(isoMillis)
		writeValue(w, http.StatusOK, map[string]any{"date": v, "values": []map[string]any{{"value": v}}})
	case "unix_timestamp":
		v := now.Unix()
		writeValue(w, http.StatusOK, map[string]any{"date": v, "values": []map[string]any{{"value": v}}})
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid format %s: use UTC or unix_timestamp", quoted(q.Get("format"))))
	}
}

// handleRead serves GET /v2/things/{token}/resources/{key}.
func (s *Server) handleRead(w http.ResponseWriter, r *http.Request, token, key string) {
	th := s.thing(token)
	if th == nil {
		writeDocError(w, http.StatusNotFound, msgThingNotFound)
		return
	}
	q := r.URL.Query()
	limit := 1
	if v, ok := q["limit"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid limit %s: must be a positive number", quoted(v[0])))
			return
		}
		limit = min(n, 1000)
	}
	var start, end int64
	var hasStart, hasEnd bool
	for _, p := range []struct {
		name string
		dst  *int64
		has  *bool
	}{{"startDate", &start, &hasStart}, {"endDate", &end, &hasEnd}} {
		if v, ok := q[p.name]; ok {
			ms, err := parseDatetime(v[0])
			if err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid %s %s", p.name, quoted(v[0])))
				return
			}
			*p.dst, *p.has = ms, true
		}
	}

	switch keyKind(key) {
	case kindGeo, kindSettings, kindSettingsPath:
		s.readMagic(w, th, key)
		return
	case kindInvalid:
		writeDocError(w, http.StatusNotFound, msgResourceNotFound)
		return
	}

	th.mu.RLock()
	sr := th.series[key]
	if sr == nil {
		th.mu.RUnlock()
		writeDocError(w, http.StatusNotFound, msgResourceNotFound)
		return
	}
	lo, hi := sr.window(start, end, hasStart, hasEnd, s.cfg.endInclusive)
	from := max(lo, hi-limit)
	keyJSON, _ := json.Marshal(key)
	buf := make([]byte, 0, 2+(hi-from)*(len(keyJSON)+64))
	buf = append(buf, '[')
	for i := hi - 1; i >= from; i-- {
		if i != hi-1 {
			buf = append(buf, ',')
		}
		buf = appendItem(buf, keyJSON, sr.recs[i], true)
	}
	th.mu.RUnlock()
	buf = append(buf, ']')
	writeJSON(w, http.StatusOK, buf)
}

// itemSizeHint is about the bytes appendItem (with datetime) appends for
// r, and a separating comma: a capacity to allocate once.
func itemSizeHint(keyJSON int, r rec) int {
	n := len(`{"key":,"value":,"datetime":""},`) + keyJSON + len(r.val) + len(isoMillis)
	if r.geo != nil {
		n += len(`,"geo":{"lat":,"long":}`) + 2*12 // coordinates to 1e-9 degrees
	}
	return n
}

// appendItem appends {"key":..,"value":..[,"datetime":..][,"geo":..]}.
func appendItem(b, keyJSON []byte, r rec, withTime bool) []byte {
	b = append(b, `{"key":`...)
	b = append(b, keyJSON...)
	b = append(b, `,"value":`...)
	b = append(b, r.val...)
	if withTime {
		b = append(b, `,"datetime":"`...)
		b = appendISO(b, r.ms)
		b = append(b, '"')
		if r.geo != nil {
			b = append(b, `,"geo":{"lat":`...)
			b = strconv.AppendFloat(b, r.geo.Lat, 'f', -1, 64)
			b = append(b, `,"long":`...)
			b = strconv.AppendFloat(b, r.geo.Long, 'f', -1, 64)
			b = append(b, '}')
		}
	}
	return append(b, '}')
}

func (s *Server) readMagic(w http.ResponseWriter, th *thing, key string) {
	th.mu.RLock()
	var value json.RawMessage
	found := true
	switch keyKind(key) {
	case kindGeo:
		if th.geo == nil {
			found = false
		} else {
			value, _ = json.Marshal(geoJSON(th.geo[0], th.geo[1]))
		}
	case kindSettings, kindSettingsPath:
		value = th.settings // never changed in place: a write stores a new document
	}
	th.mu.RUnlock()
	switch keyKind(key) {
	case kindSettings:
		if value == nil {
			value = json.RawMessage(`{}`)
		}
	case kindSettingsPath:
		path, _ := settingsPath(key)
		value, found = getPath(value, path)
	}
	if !found {
		writeDocError(w, http.StatusNotFound, msgResourceNotFound)
		return
	}
	// The value is stored compact and valid: it is sent as it is, not
	// decoded and encoded again.
	keyJSON, _ := json.Marshal(key)
	buf := make([]byte, 0, len(keyJSON)+len(value)+22)
	buf = append(append(append(buf, `[{"key":`...), keyJSON...), `,"value":`...)
	writeJSON(w, http.StatusOK, append(append(buf, value...), "}]"...))
}

type geoPoint struct {
	Type        string     `json:"type"`
	Coordinates [2]float64 `json:"coordinates"`
}

func geoJSON(long, lat float64) geoPoint {
	return geoPoint{Type: "Point", Coordinates: [2]float64{long, lat}}
}
