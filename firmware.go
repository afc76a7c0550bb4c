package thethings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/version"
	"github.com/thethings-go/thethings/internal/wire"
)

// Firmware is a firmware file the platform offers the thing.
type Firmware struct {
	ID      string // the platform's _id, for DownloadFirmware
	Version string // as the platform sent it: a number prints as such ("3")
}

// Firmwares lists the firmware files the platform offers the thing
// (GET things/{token}/firmwares/latest), in the platform's order. An
// answer that is not such a list is an error matching ErrInvalidValue.
func (c *Client) Firmwares(ctx context.Context) ([]Firmware, error) {
	var answer struct {
		Firmwares []struct {
			ID      json.RawMessage `json:"_id"`
			Version json.RawMessage `json:"version"`
		} `json:"firmwares"`
	}
	rt := c.thingRoute("firmwares", "latest")
	if _, err := c.do(ctx, &request{kind: transport.Idempotent, method: http.MethodGet, rt: rt, out: &answer}); err != nil {
		return nil, err
	}
	out := make([]Firmware, 0, len(answer.Firmwares))
	for i, f := range answer.Firmwares {
		id, ok1 := scalarText(f.ID)
		v, ok2 := scalarText(f.Version)
		if !ok1 || !ok2 || id == "" {
			return nil, errorf("thethings: GET %s: firmware %d has no usable _id and version: %w", c.displayPath(rt), i, ErrInvalidValue)
		}
		out = append(out, Firmware{ID: id, Version: v})
	}
	return out, nil
}

// scalarText is a JSON string's text or a number's literal; null is "".
func scalarText(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	var s string
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", true
	case raw[0] == '"':
		return s, json.Unmarshal(raw, &s) == nil
	}
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		return "", false
	}
	return n.String(), true
}

// LatestFirmware returns the firmware with the highest version, and false
// when the platform offers none. Versions compare as numbers when both
// parse as numbers, else by semver.org precedence when both are semantic
// versions (an optional leading "v"), else as text. Of equal versions the
// first listed wins.
func (c *Client) LatestFirmware(ctx context.Context) (Firmware, bool, error) {
	list, err := c.Firmwares(ctx)
	if err != nil || len(list) == 0 {
		return Firmware{}, false, err
	}
	best := list[0]
	for _, f := range list[1:] {
		if version.Compare(f.Version, best.Version) > 0 {
			best = f
		}
	}
	return best, true, nil
}

// DownloadFirmware streams the firmware file id to w and returns the
// number of bytes written. w never receives more than maxBytes bytes: a
// longer file is an error matching ErrInvalidValue, before any byte when
// the server announces its length.
//
// A download cut by the network (or by the HTTP client's Timeout, which
// bounds one request) resumes where it stopped with a Range request, under
// the client's RetryPolicy, as long as each attempt makes progress. The
// resumed part is appended only when the server answers 206 with the
// expected Content-Range and, when the file had an ETag, the same file;
// otherwise the call fails, saying so, and w keeps only the bytes of the
// first answer: never a mix. Whatever reached w before an error is a
// prefix of the file; the caller discards it or starts over.
func (c *Client) DownloadFirmware(ctx context.Context, id string, w io.Writer, maxBytes int64) (int64, error) {
	switch {
	case id == "":
		return 0, errorf("thethings: DownloadFirmware: empty firmware id: %w", ErrInvalidValue)
	case w == nil:
		return 0, errorf("thethings: DownloadFirmware: nil writer: %w", ErrInvalidValue)
	case maxBytes <= 0:
		return 0, errorf("thethings: DownloadFirmware: maxBytes %d must be positive: %w", maxBytes, ErrInvalidValue)
	}
	if err := checkContext(ctx); err != nil {
		return 0, err
	}
	d := &download{c: c, rt: c.thingRoute("firmwares", "download", id), w: w, max: maxBytes, total: -1}
	// Each attempt resumes where the last one was cut; one that makes
	// progress starts the retry budget and the backoff over.
	loop := transport.Loop{Policy: c.tr.Policy, Max: c.retry.MaxRetries}
	last, _ := loop.Run(ctx, func(ctx context.Context) transport.Step {
		before := d.n
		err := d.attempt(ctx)
		var cut *cutError
		if !errors.As(err, &cut) {
			return transport.Step{Err: err}
		}
		d.cut = cut
		retry, _ := transport.DecideError(transport.Idempotent, false, cut.err, true)
		progress := d.n > before
		return transport.Step{Err: err, Retry: retry, Reset: progress, Lived: progress}
	})
	if cut, ok := last.Err.(*cutError); ok {
		return d.n, cut.final(ctx)
	}
	return d.n, last.Err
}

// download is the state of one DownloadFirmware across its requests.
type download struct {
	c     *Client
	rt    route
	w     io.Writer
	max   int64
	n     int64     // bytes written to w
	total int64     // the file's length, -1 while unknown
	etag  string    // the first answer's strong ETag
	cut   *cutError // the last cut, which a resume answers
	buf   []byte
}

// cutError is a body cut by the network after n bytes: the download may
// resume.
type cutError struct {
	d   *download
	err error
}

func (e *cutError) Error() string { return e.final(context.Background()).Error() }

// final is the error returned when the download does not resume.
func (e *cutError) final(ctx context.Context) error {
	ce := &causeError{
		msg: wire.OnePrefix(fmt.Sprintf("thethings: GET %s: download cut after %d bytes: %s",
			e.d.c.displayPath(e.d.rt), e.d.n, e.d.c.redact(e.err.Error()))),
		errs: []error{e.err},
	}
	if ctx.Err() != nil && !errors.Is(e.err, ctx.Err()) {
		ce.errs = append(ce.errs, ctx.Err())
	}
	return ce
}

// attempt sends one request, from byte d.n on, and copies its answer to
// d.w. A body cut by the network is a *cutError, which the transport does
// not retry itself: the next attempt resumes it with a Range request.
func (d *download) attempt(ctx context.Context) error {
	c := d.c
	req := c.newRequest(&request{kind: transport.Idempotent, method: http.MethodGet, rt: d.rt})
	req.Header.Set("Accept", "application/octet-stream, */*")
	// The file's own bytes, so that a resumed range starts where this
	// answer's bytes stopped.
	req.Header.Set("Accept-Encoding", "identity")
	if d.n > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(d.n, 10)+"-")
		if d.etag != "" {
			req.Header.Set("If-Range", d.etag)
		}
	}
	var cut error
	_, err := c.tr.Do(ctx, req, func(resp *http.Response) error {
		if err := c.checkResponse(resp, req); err != nil {
			return err
		}
		if err := d.check(resp, req.Path); err != nil {
			return err
		}
		var err error
		cut, err = d.copy(resp.Body, req.Path)
		return err
	})
	if err != nil {
		return err
	}
	return cut
}

// copy copies body to d.w, bounded by d.max. A read that fails before the
// file's end is returned as cut, a *cutError, not as err.
func (d *download) copy(body io.Reader, path string) (cut, err error) {
	if d.buf == nil {
		d.buf = make([]byte, 64<<10)
	}
	for {
		m, rerr := body.Read(d.buf)
		if m > 0 {
			if d.n+int64(m) > d.max {
				return nil, d.tooLarge(path)
			}
			wn, werr := d.w.Write(d.buf[:m])
			d.n += int64(wn)
			if werr == nil && wn < m {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return nil, errorf("thethings: GET %s: write firmware: %w", path, werr)
			}
		}
		switch {
		case rerr == io.EOF && d.total >= 0 && d.n != d.total:
			return &cutError{d: d, err: io.ErrUnexpectedEOF}, nil
		case rerr == io.EOF:
			return nil, nil
		case rerr != nil:
			return &cutError{d: d, err: rerr}, nil
		}
	}
}

// check accepts an answer: the whole file first, then only the expected
// rest of the same file.
func (d *download) check(resp *http.Response, path string) error {
	if d.n == 0 {
		if resp.StatusCode != http.StatusOK {
			return errorf("thethings: GET %s: answered %d to a download without Range: %w", path, resp.StatusCode, ErrInvalidValue)
		}
		d.total = resp.ContentLength
		if d.total > d.max {
			return d.tooLarge(path)
		}
		if e := resp.Header.Get("ETag"); strings.HasPrefix(e, `"`) {
			d.etag = e
		}
		return nil
	}
	if resp.StatusCode != http.StatusPartialContent {
		return errorf("thethings: GET %s: download cut after %d bytes and the server cannot resume it (answered %d to a Range request, not 206): %w",
			path, d.n, resp.StatusCode, d.cut.err)
	}
	start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
	if !ok || start != d.n || d.total >= 0 && total != d.total {
		return errorf("thethings: GET %s: resumed download answered Content-Range %q for bytes %d- of %d: %w",
			path, shorten(resp.Header.Get("Content-Range")), d.n, d.total, ErrInvalidValue)
	}
	if d.total < 0 && total >= 0 { // the first answer did not say
		d.total = total
		if total > d.max {
			return d.tooLarge(path)
		}
	}
	return nil
}

func (d *download) tooLarge(path string) error {
	return errorf("thethings: GET %s: firmware larger than %d bytes: %w", path, d.max, ErrInvalidValue)
}

// parseContentRange reads "bytes START-END/TOTAL"; total is -1 for "*".
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	first, last, found2 := strings.Cut(rng, "-")
	if !found || !found2 {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(first, 10, 64)
	end, err2 := strconv.ParseInt(last, 10, 64)
	total = -1
	var err3 error
	if tot != "*" {
		total, err3 = strconv.ParseInt(tot, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start || total >= 0 && end >= total {
		return 0, 0, false
	}
	return start, total, true
}
