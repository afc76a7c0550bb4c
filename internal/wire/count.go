package wire

// Counter counts the elements of a top-level JSON array as its bytes
// arrive, so that a reader can stop once it holds the elements it wants.
// It tracks only nesting, strings and escapes; the decoder checks the rest.
type Counter struct {
	off   int // bytes of the input scanned so far
	depth int
	inStr bool
	esc   bool
	n     int  // elements ended by a comma at depth 1
	done  bool // the array closed
}

// Scan scans the bytes of b not scanned by earlier calls (b grows from
// call to call, its prefix unchanged) and reports how many elements are
// complete, and whether the array has ended.
func (c *Counter) Scan(b []byte) (elements int, closed bool) {
	if c.done {
		return c.n, true
	}
	depth, inStr, esc, n := c.depth, c.inStr, c.esc, c.n
	for i := c.off; i < len(b); i++ {
		ch := b[i]
		if inStr {
			switch {
			case esc:
				esc = false
			case ch == '\\':
				esc = true
			case ch == '"':
				inStr = false
			}
			continue
		}
		switch ch {
		case '"':
			inStr = true
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				// The last element, if any, ended with the array.
				c.off, c.done, c.n = i+1, true, n+1
				return c.n, true
			}
		case ',':
			if depth == 1 {
				n++
			}
		}
	}
	c.off = len(b)
	c.depth, c.inStr, c.esc, c.n = depth, inStr, esc, n
	return n, false
}
