package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A stream with every framing hazard: the subscribed frame, keep-alives,
// whitespace and newlines between frames, strings holding brackets, braces,
// escaped quotes and backslashes, nested values and non-ASCII text.
var hazardFrames = []string{
	`{"status":"success","message":"subscribed"}`,
	`{}`,
	`[{"key":"temp","value":21.5,"datetime":"2026-01-02T03:04:05.678Z"}]`,
	`{}`,
	`[{"key":"text","value":"a ] } [ { \" \\ end"}]`,
	`[{"key":"esc","value":"\\"},{"key":"q","value":"\\\"]"}]`,
	`[{"key":"obj","value":{"a":[1,[2,{"b":"}"}]],"c":{}}},{"key":"u","value":"héllo ☃ \u00e9"}]`,
	`{ }`,
	`[]`,
}

func hazardStream() []byte {
	seps := []string{"", "\n", " ", "\r\n", "\t\t", ""}
	var b bytes.Buffer
	for i, f := range hazardFrames {
		b.WriteString(seps[i%len(seps)])
		b.WriteString(f)
	}
	b.WriteString("\n")
	return b.Bytes()
}

// readAll returns every frame (copied) and the final error.
func readAll(d *Decoder) ([]string, error) {
	var frames []string
	for {
		f, err := d.Next()
		if err != nil {
			return frames, err
		}
		frames = append(frames, string(f))
	}
}

// splitReader returns the data in chunks cut at random points.
type splitReader struct {
	data []byte
	rng  *rand.Rand
}

func (r *splitReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := 1 + r.rng.IntN(min(len(r.data), 64))
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func TestDecoderReaders(t *testing.T) {
	data := hazardStream()
	readers := map[string]func() io.Reader{
		"whole":   func() io.Reader { return bytes.NewReader(data) },
		"onebyte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
		"half":    func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
		"dataerr": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			frames, err := readAll(NewDecoder(mk(), 0))
			assert.ErrorIs(t, err, io.EOF)
			assert.Equal(t, hazardFrames, frames)
		})
	}
	for seed := range uint64(200) {
		r := &splitReader{data: data, rng: rand.New(rand.NewPCG(seed, 1))}
		frames, err := readAll(NewDecoder(r, 0))
		require.ErrorIs(t, err, io.EOF, "seed %d", seed)
		require.Equal(t, hazardFrames, frames, "seed %d", seed)
	}
}

func TestDecoderFramesAreValidJSON(t *testing.T) {
	frames, err := readAll(NewDecoder(bytes.NewReader(hazardStream()), 0))
	require.ErrorIs(t, err, io.EOF)
	for _, f := range frames {
		assert.True(t, json.Valid([]byte(f)), f)
	}
}

func TestDecoderEnds(t *testing.T) {
	// EOF inside a frame is ErrPartialFrame (an io.ErrUnexpectedEOF).
	_, err := readAll(NewDecoder(strings.NewReader(`{}[{"key":"a"`), 0))
	assert.ErrorIs(t, err, ErrPartialFrame)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	_, err = readAll(NewDecoder(iotest.OneByteReader(strings.NewReader(`{} {"a":"}`)), 0))
	assert.ErrorIs(t, err, ErrPartialFrame)
	// A body cut between frames (no final chunk) is not a partial frame.
	frames, err := readAll(NewDecoder(io.MultiReader(strings.NewReader(`{}[1]`), iotest.ErrReader(io.ErrUnexpectedEOF)), 0))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.NotErrorIs(t, err, ErrPartialFrame)
	assert.Equal(t, []string{"{}", "[1]"}, frames)
	// The same cut inside a frame is.
	_, err = readAll(NewDecoder(io.MultiReader(strings.NewReader(`{}[1`), iotest.ErrReader(io.ErrUnexpectedEOF)), 0))
	assert.ErrorIs(t, err, ErrPartialFrame)
	frames, err = readAll(NewDecoder(strings.NewReader("{}  \n "), 0))
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, []string{"{}"}, frames)

	// A read error after data: the complete frames come first.
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader(`{}[1]`), iotest.ErrReader(boom))
	frames, err = readAll(NewDecoder(r, 0))
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, []string{"{}", "[1]"}, frames)
	// iotest.TimeoutReader fails its second read.
	frames, err = readAll(NewDecoder(iotest.TimeoutReader(iotest.OneByteReader(strings.NewReader("{}"))), 0))
	assert.ErrorIs(t, err, iotest.ErrTimeout)
	assert.Empty(t, frames)

	// Errors are sticky.
	d := NewDecoder(strings.NewReader(`x{}`), 0)
	_, err = d.Next()
	var se *SyntaxError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, int64(0), se.Offset)
	_, err2 := d.Next()
	assert.Equal(t, err, err2)

	// Top-level scalars are not frames; the offset counts from the start.
	_, err = readAll(NewDecoder(iotest.OneByteReader(strings.NewReader(`{}  [] 42`)), 0))
	require.ErrorAs(t, err, &se)
	assert.Equal(t, int64(7), se.Offset)
	assert.Equal(t, byte('4'), se.Byte)
}

func TestDecoderZeroProgress(t *testing.T) {
	_, err := readAll(NewDecoder(zeroReader{}, 0))
	assert.ErrorIs(t, err, io.ErrNoProgress)
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestDecoderFrameLimit(t *testing.T) {
	const limit = 1000
	exact := `["` + strings.Repeat("x", limit-4) + `"]`
	require.Len(t, exact, limit)
	for name, mk := range map[string]func(string) io.Reader{
		"whole":   func(s string) io.Reader { return strings.NewReader(s) },
		"onebyte": func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
	} {
		t.Run(name, func(t *testing.T) {
			frames, err := readAll(NewDecoder(mk("{}"+exact+"{}"), limit))
			assert.ErrorIs(t, err, io.EOF)
			assert.Equal(t, []string{"{}", exact, "{}"}, frames)

			// A frame over the limit is skipped, reported once, and the
			// stream goes on.
			over := `["` + strings.Repeat("x", limit-3) + `"]`
			d := NewDecoder(mk("{}"+over+"[1]"+over+over+"{}"), limit)
			var got []string
			tooLarge := 0
			for {
				f, err := d.Next()
				if errors.Is(err, ErrFrameTooLarge) {
					tooLarge++
					continue
				}
				if err != nil {
					assert.ErrorIs(t, err, io.EOF)
					break
				}
				got = append(got, string(f))
			}
			assert.Equal(t, []string{"{}", "[1]", "{}"}, got)
			assert.Equal(t, 3, tooLarge)
		})
	}
	// A long frame is skipped without buffering more than the limit of it.
	long := io.MultiReader(strings.NewReader(`["`), io.LimitReader(infiniteX{}, 64*limit), strings.NewReader(`"]{}`))
	d := NewDecoder(long, limit)
	_, err := d.Next()
	assert.ErrorIs(t, err, ErrFrameTooLarge)
	assert.LessOrEqual(t, d.buffered(), limit+1)
	f, err := d.Next()
	require.NoError(t, err)
	assert.Equal(t, "{}", string(f))
	// Cut inside a skipped frame: a partial frame, as any other.
	d = NewDecoder(io.MultiReader(strings.NewReader(`["`), io.LimitReader(infiniteX{}, 4*limit)), limit)
	_, err = d.Next()
	assert.ErrorIs(t, err, ErrPartialFrame)
}

type infiniteX struct{}

func (infiniteX) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func TestDecoderShrinksAfterLargeFrame(t *testing.T) {
	big := `["` + strings.Repeat("y", 200<<10) + `"]`
	d := NewDecoder(io.MultiReader(strings.NewReader(big), strings.NewReader(strings.Repeat("{}", 100))), 0)
	f, err := d.Next()
	require.NoError(t, err)
	assert.Len(t, f, len(big))
	require.Greater(t, d.buffered(), shrinkAbove)
	for range 100 {
		f, err = d.Next()
		require.NoError(t, err)
		require.Equal(t, "{}", string(f))
	}
	assert.LessOrEqual(t, d.buffered(), initialBuffer)
}

// repeatReader serves the same bytes forever.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

func TestKeepAlivesDoNotAllocate(t *testing.T) {
	d := NewDecoder(&repeatReader{data: []byte("{}\n{ }{}")}, 0)
	allocs := testing.AllocsPerRun(1000, func() {
		f, err := d.Next()
		if err != nil || !IsKeepAlive(f) {
			t.Fatalf("frame %q, err %v", f, err)
		}
	})
	assert.Zero(t, allocs)
}

func TestIsKeepAlive(t *testing.T) {
	for s, want := range map[string]bool{
		"{}": true, "{ }": true, "{\n\t}": true,
		"[]": false, `{"a":1}`: false, "{": false, "": false, `{"status":"success"}`: false,
	} {
		assert.Equal(t, want, IsKeepAlive([]byte(s)), s)
	}
}

// FuzzDecoder checks that framing does not depend on how the bytes arrive,
// never panics, never returns a frame over the limit, and agrees with
// encoding/json on every stream that encoding/json reads as a sequence of
// objects and arrays.
func FuzzDecoder(f *testing.F) {
	f.Add(hazardStream(), uint64(1))
	f.Add([]byte(`{"status":"success","message":"subscribed"}{}[{"key":"a","value":"]}"}]`), uint64(7))
	f.Add([]byte(`{"a":"\\"}[1]`), uint64(3))
	f.Add([]byte(`[[[[{"x":"\"\\\""}]]]] {}`), uint64(0))
	f.Add([]byte(`{}{"a":`), uint64(2))
	f.Add([]byte(`{}  x`), uint64(5))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		const limit = 256
		whole, wholeErr := readAll(NewDecoder(bytes.NewReader(data), limit))
		split, splitErr := readAll(NewDecoder(&splitReader{data: data, rng: rand.New(rand.NewPCG(seed, 2))}, limit))
		one, oneErr := readAll(NewDecoder(iotest.OneByteReader(bytes.NewReader(data)), limit))
		if !slices.Equal(whole, split) || !slices.Equal(whole, one) {
			t.Fatalf("frames depend on the reads:\nwhole %q\nsplit %q\none   %q", whole, split, one)
		}
		// Nor must the kind of error that ends them.
		class := func(err error) string {
			var se *SyntaxError
			switch {
			case errors.As(err, &se):
				return "syntax"
			case errors.Is(err, ErrFrameTooLarge):
				return "large"
			case errors.Is(err, io.ErrUnexpectedEOF):
				return "unexpected"
			case errors.Is(err, io.EOF):
				return "eof"
			}
			return err.Error()
		}
		if class(wholeErr) != class(splitErr) || class(wholeErr) != class(oneErr) {
			t.Fatalf("errors depend on the reads: %v / %v / %v", wholeErr, splitErr, oneErr)
		}
		for _, fr := range whole {
			if len(fr) > limit {
				t.Fatalf("frame of %d bytes over the limit %d", len(fr), limit)
			}
		}
		// Reference: encoding/json's own stream decoder.
		dec := json.NewDecoder(bytes.NewReader(data))
		var ref []string
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				if err != io.EOF {
					return // not a valid JSON stream: no reference
				}
				break
			}
			if raw[0] != '{' && raw[0] != '[' {
				return // scalars are no frames
			}
			ref = append(ref, string(raw))
		}
		for _, r := range ref {
			if len(r) > limit {
				return
			}
		}
		if wholeErr != io.EOF || !slices.Equal(whole, ref) {
			t.Fatalf("valid stream framed differently:\nours %q (%v)\njson %q", whole, wholeErr, ref)
		}
	})
}

// buffered is the size of the decoder's buffer.
func (d *Decoder) buffered() int { return len(d.buf) }
