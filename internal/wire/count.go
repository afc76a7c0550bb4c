package wire

// Counter counts the elements of a top-level JSON array as its bytes
// arrive, so that a reader can stop once it holds the elements it wants.
// It tracks only nesting, strings and escapes; the decoder checks the rest.
type Counter struct {
	s    Scanner
	off  int  // bytes of the input scanned so far
	done bool // the array closed
}

// Scan scans the bytes of b not scanned by earlier calls (b grows from
// call to call, its prefix unchanged) and reports how many elements are
// complete, and whether the array has ended.
func (c *Counter) Scan(b []byte) (elements int, closed bool) {
	if !c.done && c.off < len(b) {
		n, done := c.s.Scan(b[c.off:])
		c.off += n
		c.done = done
	}
	if c.done {
		// The last element, if any, ended with the array.
		return c.s.commas + 1, true
	}
	return c.s.commas, false
}
