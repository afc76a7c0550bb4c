package thethingstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Firmware files, cloud functions and the resources list
//
//	GET  /v2/things/{token}/firmwares/latest         {"status":"success","firmwares":[{"_id":..,"version":..}]}
//	GET  /v2/things/{token}/firmwares/download/{id}  the file (application/octet-stream), Range: bytes=N-
//	POST /v2/things/{token}/code/functions/{name}    {"params":..} → the function's result as JSON
//	GET  /v2/things/{token}/resources                {"resources":[keys...]}
//
// Firmwares belong to the Server (the platform keeps them per product), so
// every thing sees every firmware. A version that parses as a number is
// listed as a JSON number, as the platform usually sends it; any other as a
// string. A download answers a single range "bytes=N-" with 206 and
// Content-Range (416 when N is at or past the end), honours If-Range
// against the file's ETag, and ignores other ranges, as RFC 9110 allows.

// Routes of the firmware, function and resources endpoints, counted by
// Server.Requests.
const (
	// RouteFirmwares is GET /v2/things/{token}/firmwares/latest.
	RouteFirmwares Route = "firmwares"
	// RouteFirmwareDownload is GET /v2/things/{token}/firmwares/download/{id}.
	RouteFirmwareDownload Route = "firmware-download"
	// RouteFunction is POST /v2/things/{token}/code/functions/{name}, any name;
	// FunctionRoute counts the calls of one function.
	RouteFunction Route = "function"
	// RouteResources is GET /v2/things/{token}/resources.
	RouteResources Route = "resources"
)

// FunctionRoute is the Route counting the calls of the cloud function name
// (those that reached it: not refused by a fault or as a bad request).
func FunctionRoute(name string) Route { return Route("function/" + name) }

// functionTimeout is the platform's limit on one function run.
const functionTimeout = 15 * time.Second

// maxFunctionAnswer bounds a function's encoded result.
const maxFunctionAnswer = 4 << 20

// Function is a cloud-code function served by the Server: it gets the
// request's "params" (JSON null when absent) and returns a result, sent as
// JSON, or an error, answered 500 with the error's text as message. ctx
// ends after 15 s, the platform's limit, or when the client goes away.
type Function func(ctx context.Context, params json.RawMessage) (any, error)

var functionName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// WithFunction serves the cloud function name (letters, digits, '-' and
// '_'). A second function of the same name replaces the first; a bad name
// or a nil f is an error.
func WithFunction(name string, f func(ctx context.Context, params json.RawMessage) (any, error)) Option {
	return func(c *config) error {
		if !functionName.MatchString(name) || f == nil {
			return fmt.Errorf("thethingstest: WithFunction(%q): want a name of letters, digits, '-', '_' and a non-nil function", name)
		}
		if c.functions == nil {
			c.functions = make(map[string]Function)
		}
		c.functions[name] = f
		return nil
	}
}

// FirmwareFaults make firmware downloads misbehave; the zero value injects
// nothing. Set them with WithFirmwareFaults or Server.SetFirmwareFaults.
type FirmwareFaults struct {
	// CutAfter, when positive, closes the connection of every download
	// answer after that many bytes of its body, without the rest: a client
	// that resumes with Range gets the file in pieces of CutAfter bytes.
	CutAfter int64
	// IgnoreRange answers every download 200 with the whole file, as a
	// server without range support does.
	IgnoreRange bool
}

// WithFirmwareFaults sets the initial firmware download faults. A negative
// CutAfter is an error.
func WithFirmwareFaults(f FirmwareFaults) Option {
	return func(c *config) error {
		if f.CutAfter < 0 {
			return fmt.Errorf("thethingstest: FirmwareFaults.CutAfter %d is negative", f.CutAfter)
		}
		c.firmwareFaults = f
		return nil
	}
}

// SetFirmwareFaults replaces the firmware download faults; safe at any
// time, from any goroutine. A negative CutAfter is off.
func (s *Server) SetFirmwareFaults(f FirmwareFaults) { s.fw.setFaults(f) }

// storedFirmware is one firmware file.
type storedFirmware struct {
	ID      string
	Version string
	Data    []byte
}

// firmwareStore holds the firmwares, the functions and their counters.
type firmwareStore struct {
	mu        sync.RWMutex
	firmwares []storedFirmware // in the order added
	faults    FirmwareFaults
	functions map[string]Function
	calls     sync.Map // function name → *atomic.Int64
}

// add stores f, replacing a firmware with the same id.
func (st *firmwareStore) add(f storedFirmware) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.firmwares = slices.DeleteFunc(st.firmwares, func(o storedFirmware) bool { return o.ID == f.ID })
	st.firmwares = append(st.firmwares, f)
}

// find returns a firmware of version whose file is data.
func (st *firmwareStore) find(version string, data []byte) (storedFirmware, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	for _, f := range st.firmwares {
		if f.Version == version && bytes.Equal(f.Data, data) {
			return f, true
		}
	}
	return storedFirmware{}, false
}

// get returns the firmware with id.
func (st *firmwareStore) get(id string) (storedFirmware, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	for _, f := range st.firmwares {
		if f.ID == id {
			return f, true
		}
	}
	return storedFirmware{}, false
}

// all returns every firmware, in the order added.
func (st *firmwareStore) all() []storedFirmware {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return slices.Clone(st.firmwares)
}

func (st *firmwareStore) setFaults(f FirmwareFaults) {
	st.mu.Lock()
	st.faults = f
	st.mu.Unlock()
}

func (st *firmwareStore) getFaults() FirmwareFaults {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.faults
}

// counter returns the call counter of function name.
func (st *firmwareStore) counter(name string) *atomic.Int64 {
	c, _ := st.calls.LoadOrStore(name, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// AddFirmware stores a firmware file under version (as the platform shows
// it: "3", "1.2.0") and returns its id, as the platform makes one: 24
// hexadecimal characters. data is copied. The same version and file added
// again keep their first id; with WithDataDir they survive a restart.
func (s *Server) AddFirmware(version string, data []byte) (id string) {
	if f, ok := s.fw.find(version, data); ok {
		return f.ID // the same file again, as an emulator restarted on its data dir adds it
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	f := storedFirmware{ID: hex.EncodeToString(b[:]), Version: version, Data: bytes.Clone(data)}
	_ = s.commit("firmware", func() []byte { return mustJSON(f) }, func() { s.fw.add(f) })
	return f.ID
}

// replayFirmware applies a firmware record of the data log.
func (s *Server) replayFirmware(doc []byte) error {
	var f storedFirmware
	if err := json.Unmarshal(doc, &f); err != nil || f.ID == "" {
		return errors.New("invalid firmware record")
	}
	s.fw.add(f)
	return nil
}

// routeFirmware serves the firmware, function and resources paths; it
// reports whether segs was one of them.
func (s *Server) routeFirmware(w http.ResponseWriter, r *http.Request, segs []string) bool {
	if len(segs) < 3 || segs[0] != "things" || segs[1] == "" {
		return false
	}
	token, rest := segs[1], segs[2:]
	route, method := Route(""), http.MethodGet
	var h http.HandlerFunc
	switch {
	case len(rest) == 1 && rest[0] == "resources":
		route, h = RouteResources, func(w http.ResponseWriter, _ *http.Request) { s.handleResources(w, token) }
	case len(rest) == 2 && rest[0] == "firmwares" && rest[1] == "latest":
		route, h = RouteFirmwares, func(w http.ResponseWriter, _ *http.Request) { s.handleFirmwares(w, token) }
	case len(rest) == 3 && rest[0] == "firmwares" && rest[1] == "download" && rest[2] != "":
		route, h = RouteFirmwareDownload, func(w http.ResponseWriter, r *http.Request) { s.handleDownload(w, r, token, rest[2]) }
	case len(rest) == 3 && rest[0] == "code" && rest[1] == "functions" && rest[2] != "":
		route, method = RouteFunction, http.MethodPost
		h = func(w http.ResponseWriter, r *http.Request) { s.handleFunction(w, r, token, rest[2]) }
	default:
		return false
	}
	s.dispatch(w, r, route, method, h)
	return true
}

func (s *Server) handleResources(w http.ResponseWriter, token string) {
	th := s.thing(token)
	if th == nil {
		writeDocError(w, http.StatusNotFound, msgThingNotFound)
		return
	}
	th.mu.RLock()
	keys := make([]string, 0, len(th.series))
	for k, sr := range th.series {
		if len(sr.recs) > 0 {
			keys = append(keys, k)
		}
	}
	th.mu.RUnlock()
	slices.Sort(keys)
	writeValue(w, http.StatusOK, map[string]any{"resources": keys})
}

func (s *Server) handleFirmwares(w http.ResponseWriter, token string) {
	if s.thing(token) == nil {
		writeDocError(w, http.StatusNotFound, msgThingNotFound)
		return
	}
	type item struct {
		ID      string `json:"_id"`
		Version any    `json:"version"`
	}
	list := []item{}
	for _, f := range s.fw.all() {
		var v any = f.Version
		if _, err := strconv.ParseFloat(f.Version, 64); err == nil && json.Valid([]byte(f.Version)) {
			v = json.Number(f.Version)
		}
		list = append(list, item{f.ID, v})
	}
	writeValue(w, http.StatusOK, map[string]any{"status": "success", "firmwares": list})
}

func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request, token, id string) {
	if s.thing(token) == nil {
		writeDocError(w, http.StatusNotFound, msgThingNotFound)
		return
	}
	f, ok := s.fw.get(id)
	if !ok {
		writeError(w, http.StatusNotFound, "firmware not found")
		return
	}
	faults := s.fw.getFaults()
	if faults.IgnoreRange {
		r.Header.Del("Range")
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+f.ID+`"`)
	cw := &cutWriter{ResponseWriter: w, rc: http.NewResponseController(w), cut: faults.CutAfter}
	http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(f.Data))
}

// cutWriter sends a download's body in flushed pieces, so that a large
// file is not held in memory to leave in one write, and aborts the
// connection after cut bytes of body when cut is positive.
type cutWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	cut     int64
	written int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), 32<<10)]
		if c.cut > 0 && c.written+int64(len(chunk)) > c.cut {
			chunk = chunk[:c.cut-c.written]
			_, _ = c.ResponseWriter.Write(chunk)
			_ = c.rc.Flush()
			panic(http.ErrAbortHandler) // the connection closes mid-body
		}
		m, err := c.ResponseWriter.Write(chunk)
		n += m
		c.written += int64(m)
		if err != nil {
			return n, err
		}
		if err := c.rc.Flush(); err != nil {
			return n, err
		}
		p = p[len(chunk):]
	}
	return n, nil
}

func (s *Server) handleFunction(w http.ResponseWriter, r *http.Request, token, name string) {
	if s.thing(token) == nil {
		writeDocError(w, http.StatusNotFound, msgThingNotFound)
		return
	}
	s.fw.mu.RLock()
	f := s.fw.functions[name]
	s.fw.mu.RUnlock()
	if f == nil {
		writeError(w, http.StatusNotFound, "function not found")
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Params json.RawMessage `json:"params"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, "invalid JSON body")
			return
		}
	}
	if req.Params == nil {
		req.Params = json.RawMessage("null")
	}
	s.fw.counter(name).Add(1)
	ctx, cancel := context.WithTimeout(r.Context(), functionTimeout)
	defer cancel()
	res, err := f(ctx, req.Params)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	b, err := json.Marshal(res)
	if err != nil || len(b) > maxFunctionAnswer {
		writeError(w, http.StatusInternalServerError, "function result is not JSON or too large")
		return
	}
	writeJSON(w, http.StatusOK, b)
}
