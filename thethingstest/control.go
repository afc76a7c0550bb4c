package thethingstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ControlPrefix is the path under which WithControlAPI serves the Server's
// ground truth and faults over HTTP. The platform has no path like it.
const ControlPrefix = "/_thethingstest/"

// WithControlAPI serves the Server's ground truth and its faults over HTTP
// under ControlPrefix, for tests that run the Server in another process
// or drive it from another language. Off by default: then those paths
// answer 404 like any unknown path. Control requests are not counted in
// Requests and no fault applies to them. All answers are JSON:
//
//	GET /_thethingstest/                     {"tokens":[..],"requests":{"write":3,..},"duplicates":0,"openSubscriptions":1}
//	GET /_thethingstest/requests             {"root":0,"activate":0,"write":3,"read":1,"subscribe":1,"date":0,"other":0}
//	GET /_thethingstest/keys?token=T         ["humidity","temperature"]
//	GET /_thethingstest/stored?token=T&key=K {"count":2,"values":[{"key":K,"value":..,"datetime":..,"geo":..},..]} (newest first)
//	GET /_thethingstest/duplicates           {"duplicates":0}
//	GET /_thethingstest/subscriptions        {"open":1}
//	GET /_thethingstest/faults               the current faults, as PUT takes them
//	PUT /_thethingstest/faults               {"every503":7,"noRetryAfter":true,"retryAfter":"2s",..}
//
// The faults document has the fields of Faults in lower camel case
// (storeThenFailEvery, dropStores...), durations as Go duration strings
// ("250ms"); a PUT replaces all faults (absent fields are off) and answers
// the faults now in force. An unknown field or an invalid value is 400 and
// changes nothing.
//
// Since it hands out every token and value, the control API answers only
// requests addressed to the Server itself: their Host must be the address
// the connection came in on (127.0.0.1:port, [::1]:port, or localhost:port
// on loopback), so a web page cannot reach it through a DNS name it
// rebinds to 127.0.0.1 (403 otherwise); and a request with a body must
// say Content-Type: application/json, which a browser does not send
// across origins without asking first (415 otherwise).
func WithControlAPI() Option {
	return func(c *config) error { c.control = true; return nil }
}

// faultsDoc is the JSON form of Faults in the control API.
type faultsDoc struct {
	Latency                 duration `json:"latency,omitzero"`
	Every503                int      `json:"every503,omitzero"`
	Every429                int      `json:"every429,omitzero"`
	RetryAfter              duration `json:"retryAfter,omitzero"`
	NoRetryAfter            bool     `json:"noRetryAfter,omitzero"`
	DropBeforeBodyEvery     int      `json:"dropBeforeBodyEvery,omitzero"`
	DropEvery               int      `json:"dropEvery,omitzero"`
	DropStores              bool     `json:"dropStores,omitzero"`
	StoreThenFailEvery      int      `json:"storeThenFailEvery,omitzero"`
	StoreThenFailStatus     int      `json:"storeThenFailStatus,omitzero"`
	StoreThenFailRetryAfter duration `json:"storeThenFailRetryAfter,omitzero"`
	StreamCutAfter          duration `json:"streamCutAfter,omitzero"`
	StopKeepAlives          bool     `json:"stopKeepAlives,omitzero"`
	SplitFrames             bool     `json:"splitFrames,omitzero"`
	CoalesceFrames          bool     `json:"coalesceFrames,omitzero"`
}

// duration is a time.Duration written as a Go duration string.
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"250ms\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

func (f Faults) doc() faultsDoc {
	return faultsDoc{
		Latency: duration(f.Latency), Every503: f.Every503, Every429: f.Every429,
		RetryAfter: duration(f.RetryAfter), NoRetryAfter: f.NoRetryAfter,
		DropBeforeBodyEvery: f.DropBeforeBodyEvery, DropEvery: f.DropEvery, DropStores: f.DropStores,
		StoreThenFailEvery: f.StoreThenFailEvery, StoreThenFailStatus: f.StoreThenFailStatus,
		StoreThenFailRetryAfter: duration(f.StoreThenFailRetryAfter),
		StreamCutAfter:          duration(f.StreamCutAfter), StopKeepAlives: f.StopKeepAlives,
		SplitFrames: f.SplitFrames, CoalesceFrames: f.CoalesceFrames,
	}
}

func (d faultsDoc) faults() Faults {
	return Faults{
		Latency: time.Duration(d.Latency), Every503: d.Every503, Every429: d.Every429,
		RetryAfter: time.Duration(d.RetryAfter), NoRetryAfter: d.NoRetryAfter,
		DropBeforeBodyEvery: d.DropBeforeBodyEvery, DropEvery: d.DropEvery, DropStores: d.DropStores,
		StoreThenFailEvery: d.StoreThenFailEvery, StoreThenFailStatus: d.StoreThenFailStatus,
		StoreThenFailRetryAfter: time.Duration(d.StoreThenFailRetryAfter),
		StreamCutAfter:          time.Duration(d.StreamCutAfter), StopKeepAlives: d.StopKeepAlives,
		SplitFrames: d.SplitFrames, CoalesceFrames: d.CoalesceFrames,
	}
}

// MarshalJSON writes f as the control API shows it: the fields in lower
// camel case, durations as Go duration strings ("250ms"), fields that are
// off left out.
func (f Faults) MarshalJSON() ([]byte, error) { return json.Marshal(f.doc()) }

// UnmarshalJSON reads f as MarshalJSON writes it, refusing unknown fields.
// Absent fields are off. It does not validate; see Validate.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var d faultsDoc
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf("thethingstest: faults: %w", err)
	}
	*f = d.faults()
	return nil
}

func (s *Server) requestCounts() map[Route]int {
	m := make(map[Route]int, len(s.routes))
	for _, r := range Routes() {
		m[r] = s.Requests(r)
	}
	return m
}

// handleControl serves the paths under ControlPrefix.
func (s *Server) handleControl(w http.ResponseWriter, r *http.Request, path string) {
	if !addressedToSelf(r) {
		writeError(w, http.StatusForbidden, "the control API answers only requests whose Host is its own address")
		return
	}
	if r.ContentLength != 0 {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			return
		}
	}
	method := http.MethodGet
	if path == "faults" {
		method = "GET, PUT"
	}
	if r.Method != http.MethodGet && (path != "faults" || r.Method != http.MethodPut) {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	q := r.URL.Query()
	need := func(name string) (string, bool) {
		v := q.Get(name)
		if v == "" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("the %q parameter is required", name))
		}
		return v, v != ""
	}
	switch path {
	case "":
		writeValue(w, http.StatusOK, struct {
			Tokens            []string      `json:"tokens"`
			Requests          map[Route]int `json:"requests"`
			Duplicates        int           `json:"duplicates"`
			OpenSubscriptions int           `json:"openSubscriptions"`
		}{s.Tokens(), s.requestCounts(), s.Duplicates(), s.OpenSubscriptions()})
	case "requests":
		writeValue(w, http.StatusOK, s.requestCounts())
	case "duplicates":
		writeValue(w, http.StatusOK, map[string]int{"duplicates": s.Duplicates()})
	case "subscriptions":
		writeValue(w, http.StatusOK, map[string]int{"open": s.OpenSubscriptions()})
	case "keys":
		token, ok := need("token")
		if !ok {
			return
		}
		writeValue(w, http.StatusOK, append([]string{}, s.Keys(token)...))
	case "stored":
		token, ok := need("token")
		if !ok {
			return
		}
		key, ok := need("key")
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, s.storedJSON(token, key))
	case "faults":
		if r.Method == http.MethodPut {
			body, ok := s.readBody(w, r)
			if !ok {
				return
			}
			var f Faults
			err := json.Unmarshal(body, &f)
			if err == nil {
				err = f.Validate()
			}
			if err != nil {
				writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "thethingstest: "))
				return
			}
			s.SetFaults(f)
		}
		writeValue(w, http.StatusOK, s.Faults())
	default:
		writeError(w, http.StatusNotFound, "not found")
	}
}

// addressedToSelf reports whether r's Host names the address its
// connection was accepted on: the same port, and the same IP, or on
// loopback any loopback IP or "localhost". A name that resolves to the
// Server (DNS rebinding) is not its address.
func addressedToSelf(r *http.Request) bool {
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if local == nil {
		return false
	}
	lhost, lport, err := net.SplitHostPort(local.String())
	if err != nil {
		return false
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, "80"
	}
	lip := net.ParseIP(lhost)
	if port != lport || lip == nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return lip.IsLoopback()
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.Equal(lip) || ip.IsLoopback() && lip.IsLoopback())
}

// storedJSON is the control API's answer for stored values: encoded from
// the store under its read lock, without copying the records first, as a
// read page is.
func (s *Server) storedJSON(token, key string) []byte {
	th := s.thing(token)
	if th == nil {
		return []byte(`{"count":0,"values":[]}`)
	}
	keyJSON := mustJSON(key)
	th.mu.RLock()
	defer th.mu.RUnlock()
	var recs []rec
	if sr := th.series[key]; sr != nil {
		recs = sr.recs
	}
	size := 32
	for _, r := range recs {
		size += itemSizeHint(len(keyJSON), r)
	}
	b := make([]byte, 0, size)
	b = strconv.AppendInt(append(b, `{"count":`...), int64(len(recs)), 10)
	b = append(b, `,"values":[`...)
	for i := len(recs) - 1; i >= 0; i-- {
		if i != len(recs)-1 {
			b = append(b, ',')
		}
		b = appendItem(b, keyJSON, recs[i], true)
	}
	return append(b, "]}"...)
}
