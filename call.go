package thethings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

// request is one call to the platform and how to read its answer.
type request struct {
	kind   transport.Kind // how it may be retried
	method string
	rt     route
	body   []byte // JSON, or nil

	// A 2xx answer is decoded into out (JSON, at most maxAnswer bytes); or
	// kept in buf, at most limit bytes (see readAnswer for partial and
	// enough); or, when both are nil, ignored: any 2xx is success.
	out     any
	buf     *bytes.Buffer
	limit   int64
	partial bool
	enough  func() func([]byte) bool

	// verified: the caller finds out itself what a failed request stored
	// (a write's delivery reads back), so a failure that may have been
	// processed is not marked ErrOutcomeUnknown here.
	verified bool
}

// maxAnswer bounds the body of every answer but read pages (see
// maxPageBody), compressed or not: the bound counts the bytes decoded.
const maxAnswer = 1 << 20

// do is the SDK's one request path: it builds r's HTTP request, sends it
// through the transport (which retries as r.kind allows), checks the
// answer (anything but 2xx becomes an *APIError) and reads it as r says.
// A failure without an answer is a *transport.Error. A failed call that may
// have been processed matches ErrOutcomeUnknown, unless it is a read or
// r.verified. cut reports that a kept answer was read only in part (see
// readAnswer).
func (c *Client) do(ctx context.Context, r *request) (cut bool, err error) {
	if err := checkContext(ctx); err != nil {
		return false, err
	}
	req := c.newRequest(r)
	buf := r.buf
	if buf == nil && r.out != nil {
		buf = new(bytes.Buffer)
	}
	maybe, err := c.tr.Do(ctx, req, func(resp *http.Response) error {
		if err := c.checkResponse(resp, req); err != nil {
			return err
		}
		if buf == nil {
			_, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
			return err
		}
		var err error
		cut, err = c.readAnswer(ctx, resp, req, r, buf)
		return err
	})
	if err != nil {
		if maybe && r.kind != transport.Idempotent && !r.verified {
			err = errorf("%w: %w", err, ErrOutcomeUnknown)
		}
		return false, err
	}
	if r.out != nil {
		if err := json.NewDecoder(buf).Decode(r.out); err != nil {
			return false, &causeError{
				msg:  wire.OnePrefix(fmt.Sprintf("thethings: %s %s: decode answer: %s", r.method, req.Path, shorten(c.redact(err.Error())))),
				errs: []error{err, ErrInvalidValue},
			}
		}
	}
	return cut, nil
}

// newRequest is the transport's request for r.
func (c *Client) newRequest(r *request) *transport.Request {
	h := http.Header{"Accept": {"application/json"}, "User-Agent": {c.userAgent}}
	if r.body != nil {
		h.Set("Content-Type", "application/json")
	}
	return &transport.Request{
		Kind:   r.kind,
		Method: r.method,
		URL:    c.base.String() + r.rt.path,
		Path:   c.displayPath(r.rt),
		Body:   r.body,
		Header: h,
	}
}

// checkResponse notes the platform's clock from the answer's Date, and is
// nil for a 2xx answer, else the *APIError it means.
func (c *Client) checkResponse(resp *http.Response, req *transport.Request) error {
	c.clock.observe(resp.Header.Get("Date"))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return c.apiError(resp, req.Method, req.Path)
}

// readAnswer reads resp's body into buf, at most r.limit bytes (maxAnswer
// when 0). With r.partial, an answer over the limit leaves its first
// limit+1 bytes in buf and reports cut; without, it is an error matching
// ErrInvalidValue. r.enough, if set, makes a reader of each answer a
// function that says when the bytes read so far are all that is wanted:
// reading then stops there, and cut is reported. A read error keeps its
// cause, and ctx's error when ctx ended, for errors.Is, while its text
// stays redacted.
func (c *Client) readAnswer(ctx context.Context, resp *http.Response, req *transport.Request, r *request, buf *bytes.Buffer) (cut bool, err error) {
	limit := r.limit
	if limit == 0 {
		limit = maxAnswer
	}
	buf.Reset()
	tooLarge := func() error {
		return errorf("thethings: %s %s: answer larger than %d bytes: %w", req.Method, req.Path, limit, ErrInvalidValue)
	}
	if resp.ContentLength > limit && !r.partial {
		return false, tooLarge()
	}
	if r.enough == nil {
		_, err = buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	} else {
		cut, err = readUntil(resp.Body, buf, limit, r.enough())
	}
	if err != nil {
		ce := &causeError{msg: wire.OnePrefix(fmt.Sprintf("thethings: %s %s: read answer: %s", req.Method, req.Path, c.redact(err.Error()))), errs: []error{err}}
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			ce.errs = append(ce.errs, ctx.Err())
		}
		return false, ce
	}
	if cut || int64(buf.Len()) > limit {
		if !r.partial {
			return true, tooLarge()
		}
		return true, nil
	}
	return false, nil
}

// readUntil reads r into buf until EOF, until buf holds more than limit
// bytes, or until enough says buf holds all that is wanted; cut reports
// that reading stopped before EOF.
func readUntil(r io.Reader, buf *bytes.Buffer, limit int64, enough func([]byte) bool) (cut bool, err error) {
	for {
		if int64(buf.Len()) > limit || enough(buf.Bytes()) {
			return true, nil
		}
		buf.Grow(bytes.MinRead)
		b := buf.AvailableBuffer()
		b = b[:min(int64(cap(b)), limit+1-int64(buf.Len()))]
		n, err := r.Read(b)
		buf.Write(b[:n])
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}
