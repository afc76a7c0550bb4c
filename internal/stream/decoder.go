// Package stream owns the framing of the thethings.iO subscription stream:
// it splits a chunked HTTP body of concatenated JSON values with no
// separator, whose chunk boundaries mean nothing, into frames, and holds the
// idle watchdog that finds dead streams. It does not decode the items a
// frame carries: internal/wire does.
package stream

import (
	"errors"
	"fmt"
	"io"

	"github.com/thethings-go/thethings/internal/wire"
)

// DefaultMaxFrame is the largest frame a Decoder accepts unless told
// otherwise: 16 MiB.
const DefaultMaxFrame = 16 << 20

const (
	initialBuffer = 512      // enough for the subscribed frame, keep-alives and small writes
	shrinkAbove   = 64 << 10 // a buffer grown past this is dropped once it is empty again
)

// ErrFrameTooLarge reports a frame longer than the decoder's limit. The
// decoder skips such a frame without buffering more than the limit of it,
// and goes on with the next one.
var ErrFrameTooLarge = errors.New("stream frame too large")

// errSkipped is scan's report that an oversize frame was skipped.
var errSkipped = errors.New("skipped")

// SyntaxError reports bytes that cannot start a frame.
type SyntaxError struct {
	Offset int64 // offset of the byte in the stream
	Byte   byte
}

// Error names the byte and its offset.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("stream: unexpected byte %q at offset %d: a frame must be a JSON object or array", e.Byte, e.Offset)
}

// Decoder splits a byte stream into top-level JSON values (frames). It does
// not care how the bytes arrive: a frame may be split across any number of
// reads, several frames may come in one read, and whitespace may separate
// them. Frames must be JSON objects or arrays; their content is not
// validated beyond what is needed to find their end (depth, strings and
// escapes). A Decoder is not safe for concurrent use.
type Decoder struct {
	r     io.Reader
	max   int
	buf   []byte
	off   int   // start of unread data in buf
	end   int   // end of data in buf
	pos   int64 // stream offset of buf[0]
	err   error // sticky read error; frames read before it are still returned
	fatal error // sticky framing error

	// state of the frame being scanned, which starts at buf[off]
	scanned  int // bytes of the frame already scanned
	sc       wire.Scanner
	skipping bool // the frame is over the limit: its bytes are dropped as they come
}

// NewDecoder returns a decoder reading r that refuses frames longer than
// maxFrame bytes (DefaultMaxFrame if maxFrame <= 0).
func NewDecoder(r io.Reader, maxFrame int) *Decoder {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &Decoder{r: r, max: maxFrame}
}

// ErrPartialFrame: the stream ended inside a frame. It matches
// io.ErrUnexpectedEOF.
var ErrPartialFrame = fmt.Errorf("stream ended inside a frame: %w", io.ErrUnexpectedEOF)

// Next returns the next frame. The slice is valid until the next call of
// Next. At the end of the stream Next returns io.EOF between frames and
// ErrPartialFrame inside one; read errors are returned as they are. Every
// such error is final. A frame over the limit is skipped, without
// buffering more than the limit of it, and reported as ErrFrameTooLarge
// once it has passed: the next call goes on with the following frame.
func (d *Decoder) Next() ([]byte, error) {
	if d.fatal != nil {
		return nil, d.fatal
	}
	for {
		frame, err := d.scan()
		if err == errSkipped {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrFrameTooLarge, d.max)
		}
		if err != nil {
			d.fatal = err
			return nil, err
		}
		if frame != nil {
			return frame, nil
		}
		if d.err != nil {
			if (d.err == io.EOF || d.err == io.ErrUnexpectedEOF) && (d.scanned > 0 || d.skipping || d.off < d.end) {
				d.err = ErrPartialFrame
			}
			return nil, d.err
		}
		if err := d.fill(); err != nil {
			d.fatal = err
			return nil, err
		}
	}
}

// scan looks for the end of the frame that starts at buf[off]. It returns
// nil, nil when more bytes are needed.
func (d *Decoder) scan() ([]byte, error) {
	if d.skipping {
		n, done := d.sc.Scan(d.buf[d.off:d.end])
		d.off += n
		if !done {
			return nil, nil
		}
		d.skipping = false
		return nil, errSkipped
	}
	if d.scanned == 0 {
		for d.off < d.end && wire.IsSpace(d.buf[d.off]) {
			d.off++
		}
		if d.off == d.end {
			return nil, nil
		}
		switch c := d.buf[d.off]; c {
		case '{', '[':
			d.sc = wire.Scanner{}
		default:
			return nil, &SyntaxError{Offset: d.pos + int64(d.off), Byte: c}
		}
	}
	n, done := d.sc.Scan(d.buf[d.off+d.scanned : d.end])
	d.scanned += n
	if d.scanned > d.max {
		// Drop what was read of the frame and the rest as it comes.
		d.off += d.scanned
		d.scanned = 0
		if done {
			return nil, errSkipped
		}
		d.skipping = true
		return nil, nil
	}
	if !done {
		return nil, nil
	}
	end := d.off + d.scanned
	frame := d.buf[d.off:end:end]
	d.off, d.scanned = end, 0
	return frame, nil
}

// fill reads more bytes, making room first. It records a read error in
// d.err and returns only ErrFrameTooLarge itself.
func (d *Decoder) fill() error {
	unread := d.end - d.off
	switch {
	case d.buf == nil:
		d.buf = make([]byte, initialBuffer)
	case d.off > 0 && (d.end == len(d.buf) || unread == 0):
		if len(d.buf) > shrinkAbove && unread <= initialBuffer {
			nb := make([]byte, initialBuffer)
			copy(nb, d.buf[d.off:d.end])
			d.buf = nb
		} else {
			copy(d.buf, d.buf[d.off:d.end])
		}
		d.pos += int64(d.off)
		d.off, d.end = 0, unread
	}
	if d.end == len(d.buf) {
		// The frame fills the buffer: grow it, up to the limit plus one
		// byte, so that a frame of exactly max bytes fits with its end.
		if len(d.buf) > d.max {
			return fmt.Errorf("%w: more than %d bytes", ErrFrameTooLarge, d.max)
		}
		nb := make([]byte, min(2*len(d.buf), d.max+1))
		copy(nb, d.buf[:d.end])
		d.buf = nb
	}
	// io.Reader discourages 0, nil answers; a reader that keeps giving
	// them is treated like io.ErrNoProgress instead of spinning.
	for range 100 {
		n, err := d.r.Read(d.buf[d.end:])
		if n < 0 || n > len(d.buf)-d.end {
			d.err = errors.New("stream: reader returned an invalid count")
			return nil
		}
		d.end += n
		if err != nil {
			d.err = err
			return nil
		}
		if n > 0 {
			return nil
		}
	}
	d.err = io.ErrNoProgress
	return nil
}

// IsKeepAlive reports whether frame is an empty JSON object: the stream's
// keep-alive. It does not allocate.
func IsKeepAlive(frame []byte) bool {
	if len(frame) < 2 || frame[0] != '{' || frame[len(frame)-1] != '}' {
		return false
	}
	for _, c := range frame[1 : len(frame)-1] {
		if !wire.IsSpace(c) {
			return false
		}
	}
	return true
}
