package thethings

import (
	"bytes"
	"context"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/thethings-go/thethings/internal/cursor"
	"github.com/thethings-go/thethings/internal/transport"
	"github.com/thethings-go/thethings/internal/wire"
)

// maxPage is the most values the platform returns for one request.
const maxPage = 1000

// A read answer is read up to pageBodyBase plus maxItemBody per value
// asked for, compressed or not, and decoded only up to the values asked
// for: no answer, however long, costs more than a bounded multiple of a
// full page.
const (
	pageBodyBase = 1 << 20
	maxItemBody  = 64 << 10
)

// pageCountFrom is the answer size from which the items read are counted,
// to stop reading at the values asked for.
const pageCountFrom = 1 << 20

func pageBodyLimit(limit int) int64 { return pageBodyBase + int64(limit)*maxItemBody }

// ReadOptions select what Read and Values return. A nil *ReadOptions reads
// from the newest value with the defaults.
type ReadOptions struct {
	// Limit is the page size, 1..1000. Zero means 1000, for Read and
	// Values alike.
	Limit int
	// Start and End bound the window [Start, End): Start is inclusive, End
	// exclusive, whatever the server does with its endDate parameter. A
	// zero time leaves that side unbounded. The platform keeps
	// milliseconds, so a bound with finer digits is rounded up to the next
	// millisecond.
	Start, End time.Time
	// Cursor resumes a read where a Page's Next left it. The window comes
	// from the cursor: Start and End must then be zero or equal to the
	// window the cursor was made with.
	Cursor string
}

// Page is the answer of one Read.
type Page struct {
	// Values are newest first, as the platform sends them, without any
	// value outside the window or already returned by an earlier page of
	// the same cursor chain. A page may hold fewer values than Limit while
	// older ones remain.
	//
	// Each Value has Key, Datetime (UTC, millisecond precision) and Geo
	// when the value was written with one. Value.Value holds the JSON as
	// encoding/json decodes it with UseNumber: json.Number for numbers (no
	// precision lost), string, bool, nil for null, map[string]any and
	// []any for objects and arrays. The accessors Float64, Int64, Text
	// and Decode convert it, accepting numbers stored as strings.
	Values []Value
	// Next resumes the read after this page. It is "" when nothing older
	// remains in the window. It is opaque and stays valid across process
	// restarts; it is bound to the key it was read from.
	Next string
}

// Read reads one page of key's history: one request, newest first. To go
// further back, pass the page's Next as the Cursor of the next call; the
// cursor chain delivers every stored value of the window exactly once (see
// [Client.Values] for how). key must be an ordinary key: the magic
// resources have their own helpers. A key that was never written is an
// error matching ErrResourceNotFound. Bad keys and options are refused
// before any I/O (ErrInvalidKey, ErrInvalidOption, ErrInvalidCursor).
func (c *Client) Read(ctx context.Context, key string, opts *ReadOptions) (*Page, error) {
	if err := checkContext(ctx); err != nil {
		return nil, err
	}
	p, err := c.newPager(key, opts, maxPage)
	if err != nil {
		return nil, err
	}
	vals, err := p.next(ctx)
	if err != nil {
		return nil, err
	}
	page := &Page{Values: vals}
	if !p.done {
		page.Next = cursor.Encode(p.st)
	}
	return page, nil
}

// Values iterates over key's history, newest first, from End (or the
// newest value) back to Start (or the oldest value), fetching pages of
// Limit values (1000 by default) by following endDate cursors.
//
// Every stored value of the window is yielded exactly once, whether the
// platform treats endDate as inclusive or exclusive and however many values
// share a timestamp: after a page whose oldest value is stamped T, the next
// request asks for the values up to and including T, skips what is newer,
// and skips the values at T already yielded (recognised by a fingerprint of
// their value and geo, counted as a multiset). Each page after the first
// therefore repeats at least one value, so N values with distinct
// timestamps take about N/999 requests. If 1000 or more values share one
// millisecond, no request can get past them and the sequence ends with an
// error matching ErrPaginationStalled instead of looping.
//
// Only the current page is held in memory. Breaking out of the loop sends
// no further request. An error is yielded once, with a zero Value, and ends
// the sequence; a key that was never written gives ErrResourceNotFound.
// Such an error is a [*ReadError] whose Cursor resumes after the last value
// yielded. A page shorter than asked for does not end the sequence: only
// a page with nothing older does.
// With opts.Cursor the iteration resumes from a Page's Next.
func (c *Client) Values(ctx context.Context, key string, opts *ReadOptions) iter.Seq2[Value, error] {
	return func(yield func(Value, error) bool) {
		if err := checkContext(ctx); err != nil {
			yield(Value{}, err)
			return
		}
		p, err := c.newPager(key, opts, maxPage)
		if err != nil {
			yield(Value{}, err)
			return
		}
		for !p.done {
			resume := p.st
			resume.Seen = slices.Clone(resume.Seen)
			page, err := p.next(ctx)
			if err != nil {
				yield(Value{}, &ReadError{Cursor: cursor.Encode(resume), Err: err})
				return
			}
			for i := range page {
				if !yield(page[i], nil) {
					return
				}
			}
			clear(page) // let the page's values go before the next request
		}
	}
}

// ReadError is the error [Client.Values] yields when a page cannot be read.
// Cursor resumes the iteration just after the last value yielded: pass it
// as ReadOptions.Cursor to Values or Read, in this process or another, to
// go on without starting over. Err is the cause (errors.Is and errors.As
// see through a ReadError).
type ReadError struct {
	Cursor string
	Err    error
}

// Error is the cause's text.
func (e *ReadError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *ReadError) Unwrap() error { return e.Err }

// pager walks key's history page by page; st is the resume point.
type pager struct {
	c     *Client
	key   string
	limit int
	st    cursor.State
	done  bool
	dec   pageDecoder
	body  bytes.Buffer
}

func (c *Client) newPager(key string, opts *ReadOptions, defaultLimit int) (*pager, error) {
	if err := wire.ValidateKey(key, false); err != nil {
		return nil, err
	}
	var o ReadOptions
	if opts != nil {
		o = *opts
	}
	if o.Limit < 0 || o.Limit > maxPage {
		return nil, errorf("thethings: read limit %d outside 1..%d: %w", o.Limit, maxPage, ErrInvalidOption)
	}
	if o.Limit == 0 {
		o.Limit = defaultLimit
	}
	p := &pager{c: c, key: key, limit: o.Limit}
	p.dec.key = key
	start, hasStart := ceilMillis(o.Start)
	end, hasEnd := ceilMillis(o.End)
	for i, t := range []time.Time{o.Start, o.End} {
		ms := []int64{start, end}[i]
		if y := t.UTC().Year(); !t.IsZero() && (y < 1 || y > 9999 || ms < cursor.MinMillis || ms > cursor.MaxMillis) {
			return nil, errorf("thethings: read window bound %s outside the years 1..9999: %w",
				t.UTC().Format(time.RFC3339Nano), ErrInvalidOption)
		}
	}
	if hasStart && hasEnd && end < start {
		return nil, errorf("thethings: read window ends (%s) before it starts (%s): %w",
			o.End.UTC().Format(time.RFC3339Nano), o.Start.UTC().Format(time.RFC3339Nano), ErrInvalidOption)
	}
	if o.Cursor == "" {
		p.st = cursor.State{Key: key, HasStart: hasStart, Start: start, HasEnd: hasEnd, End: end}
		return p, nil
	}
	st, err := cursor.Decode(o.Cursor)
	if err != nil {
		return nil, errorf("thethings: read cursor not made by this SDK, or altered: %w", ErrInvalidCursor)
	}
	if st.Key != key {
		return nil, errorf("thethings: read cursor belongs to another key than %q: %w", key, ErrInvalidCursor)
	}
	if hasStart && (!st.HasStart || st.Start != start) || hasEnd && (!st.HasEnd || st.End != end) {
		return nil, errorf("thethings: Start and End differ from the cursor's window: %w", ErrInvalidOption)
	}
	p.st = st
	return p, nil
}

// ceilMillis is t in Unix milliseconds, rounded up; ok is false for the zero time.
func ceilMillis(t time.Time) (ms int64, ok bool) {
	if t.IsZero() {
		return 0, false
	}
	ms = t.UnixMilli()
	if t.Sub(time.UnixMilli(ms)) > 0 {
		ms++
	}
	return ms, true
}

func millisQuery(ms int64) string {
	return queryTime(time.UnixMilli(ms))
}

// next sends one request and returns the values it brings that were not
// delivered before, at most p.limit of them, advancing p.st. The slice is
// reused by the following call.
func (p *pager) next(ctx context.Context) ([]Value, error) {
	st := &p.st
	// Ask for limit fresh values plus the ones at T already delivered, which
	// the answer repeats.
	reqLimit := min(maxPage, p.limit+len(st.Seen))

	// Values stamped >= bound have been delivered or are outside the window.
	var bound int64
	hasBound := true
	switch {
	case st.HasT:
		bound = st.T + 1
	case st.HasEnd:
		bound = st.End
	default:
		hasBound = false
	}
	q := make(url.Values, 3)
	q.Set("limit", strconv.Itoa(reqLimit))
	if st.HasStart {
		q.Set("startDate", millisQuery(st.Start))
	}
	if hasBound {
		e := bound
		if st.Inclusive {
			e--
		}
		// After a value at the last instant of the year 9999 no endDate
		// can be written: none is needed, the filter below does the work.
		if e <= cursor.MaxMillis {
			q.Set("endDate", millisQuery(e))
		}
	}
	rt := p.c.thingRoute("resources", p.key)
	rt.path += "?" + q.Encode()
	rt.redacted += "?" + q.Encode()

	items, vals, err := p.fetch(ctx, rt, reqLimit)
	if err != nil {
		return nil, err
	}
	dst := vals[:0] // filtered in place: dst never overtakes the loop

	seen := newMultiset(st.Seen)
	used := multiset{}
	modeChanged, reachedStart, capped := false, false, false
	for i := range items {
		it := &items[i]
		if hasBound && it.ms >= bound {
			// Newer than asked: the server included its endDate.
			if !st.Inclusive && it.ms == bound {
				st.Inclusive, modeChanged = true, true
			}
			continue
		}
		if st.HasStart && it.ms < st.Start {
			reachedStart = true
			break
		}
		if len(dst) == p.limit {
			capped = true
			break
		}
		if st.HasT && it.ms == st.T && used.count(it.fp) < seen.count(it.fp) {
			used.add(it.fp)
			continue
		}
		if !st.HasT || it.ms != st.T {
			st.HasT, st.T = true, it.ms
			st.Seen = st.Seen[:0]
			seen, used = multiset{}, multiset{}
		}
		st.Seen = append(st.Seen, it.fp)
		seen.add(it.fp)
		used.add(it.fp)
		dst = append(dst, vals[i])
	}
	clear(vals[len(dst):])
	switch {
	case capped:
		p.done = false
	case reachedStart || len(items) == 0:
		p.done = true
	case len(dst) > 0 || modeChanged:
		// A page shorter than asked for is no proof of the end of
		// history (v0.2): only a page that brings nothing new is.
		p.done = false
	case len(items) >= reqLimit:
		return nil, errorf("thethings: read %q: %d values or more share the datetime %s: %w",
			p.key, len(st.Seen), millisQuery(st.T), ErrPaginationStalled)
	default:
		p.done = true
	}
	if len(st.Seen) > cursor.MaxSeen {
		return nil, errorf("thethings: read %q: more than %d values share the datetime %s: %w",
			p.key, cursor.MaxSeen, millisQuery(st.T), ErrPaginationStalled)
	}
	return dst, nil
}

// fetch reads and decodes one page, sorted newest first.
func (p *pager) fetch(ctx context.Context, rt route, limit int) ([]rawItem, []Value, error) {
	bound := pageBodyLimit(limit)
	cut, err := p.c.do(ctx, &request{kind: transport.Idempotent, method: http.MethodGet, rt: rt, buf: &p.body, limit: bound, partial: true, enough: func() func([]byte) bool {
		// Count the items only past the size of any usual page: then stop
		// reading at the items asked for.
		var count wire.Counter
		return func(b []byte) bool {
			if len(b) < pageCountFrom {
				return false
			}
			n, closed := count.Scan(b)
			return closed || n >= limit
		}
	}})
	if err != nil {
		return nil, nil, err
	}
	p.dec.max = limit
	items, vals, err := p.dec.decode(p.body.Bytes(), limit)
	if err != nil && cut {
		return nil, nil, errorf("thethings: GET %s: answer larger than %d bytes without %d whole values: %w",
			p.c.displayPath(rt), bound, limit, ErrInvalidValue)
	}
	if err != nil {
		return nil, nil, errorf("thethings: GET %s: %w", p.c.displayPath(rt), err)
	}
	if !slices.IsSortedFunc(items, func(a, b rawItem) int { return cmpDesc(a.ms, b.ms) }) {
		idx := make([]int, len(items))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmpDesc(items[a].ms, items[b].ms) })
		si, sv := make([]rawItem, len(items)), make([]Value, len(items))
		for i, j := range idx {
			si[i], sv[i] = items[j], vals[j]
		}
		copy(items, si)
		vals = sv
	}
	return items, vals, nil
}

func cmpDesc(a, b int64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// multiset counts fingerprints. Small sets are the rule (one value per
// timestamp), so it stays a slice until it grows.
type multiset struct {
	small []uint64
	m     map[uint64]int
}

func newMultiset(fps []uint64) multiset {
	var s multiset
	for _, fp := range fps {
		s.add(fp)
	}
	return s
}

func (s *multiset) add(fp uint64) {
	if s.m == nil && len(s.small) < 16 {
		s.small = append(s.small, fp)
		return
	}
	if s.m == nil {
		s.m = make(map[uint64]int, 2*len(s.small))
		for _, f := range s.small {
			s.m[f]++
		}
		s.small = nil
	}
	s.m[fp]++
}

func (s *multiset) count(fp uint64) int {
	if s.m != nil {
		return s.m[fp]
	}
	n := 0
	for _, f := range s.small {
		if f == fp {
			n++
		}
	}
	return n
}

// rawItem is what pagination needs of a decoded item: its millisecond and
// the fingerprint of its value and geo.
type rawItem struct {
	ms int64
	fp uint64
}

// pageDecoder decodes a read answer, a JSON array of
// {"key":..,"value":..,"datetime":..,"geo":{"lat":..,"long":..}}, with few
// allocations (see wire.Decoder): the key is shared, literals are cut from
// one string per page, geos come from one slice per page. Its buffers are
// reused from page to page.
type pageDecoder struct {
	key   string
	max   int // if positive, decoding ends after max items (see wire.Decoder.Max)
	items []rawItem
	vals  []Value
}

// answerDecoders hold the scratch buffers of decoding read answers, which
// a page's values do not need once they are built.
var answerDecoders = sync.Pool{New: func() any {
	return &wire.Decoder{Reuse: true, Fingerprint: true, ParseTime: parseAnswerTime}
}}

// decode parses a page of about hint items. The returned slices are
// reused by the next call.
func (d *pageDecoder) decode(b []byte, hint int) ([]rawItem, []Value, error) {
	hint = min(hint, maxPage)
	w := answerDecoders.Get().(*wire.Decoder)
	defer answerDecoders.Put(w)
	w.Key, w.Max = d.key, d.max
	items, err := w.Decode(b, hint)
	if err != nil {
		return nil, nil, err
	}
	defer clear(items) // the pool keeps no values alive
	fps := w.Fingerprints()
	if cap(d.vals) < hint {
		d.items, d.vals = make([]rawItem, 0, hint), make([]Value, 0, hint)
	}
	d.items, d.vals = d.items[:0], d.vals[:0]
	n := 0
	for j := range items {
		if items[j].Geo != nil {
			n++
		}
	}
	var geos []Geo
	if n > 0 {
		geos = make([]Geo, 0, n)
		for j := range items {
			if g := items[j].Geo; g != nil {
				geos = append(geos, Geo(*g))
			}
		}
	}
	for j := range items {
		it := &items[j]
		v := Value{Key: it.Key, Value: it.Value, Datetime: it.Time}
		if it.Geo != nil {
			v.Geo, geos = &geos[0], geos[1:]
		}
		d.items = append(d.items, rawItem{ms: it.Time.UnixMilli(), fp: fps[j]})
		d.vals = append(d.vals, v)
	}
	return d.items, d.vals, nil
}

func parseAnswerTime(s string) (time.Time, error) {
	t, err := ParseTime(s)
	if err != nil {
		return t, errorf("thethings: read answer: %w", err)
	}
	return t, nil
}
