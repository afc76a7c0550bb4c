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
	depth, inStr, esc := c.depth, c.inStr, c.esc
	for i := c.off; i < len(b) && !c.done; i++ {
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
				c.done = true
				c.n++ // the last element, if any, ended with the array
			}
		case ',':
			if depth == 1 {
				c.n++
			}
		}
	}
	c.off = len(b)
	c.depth, c.inStr, c.esc = depth, inStr, esc
	return c.n, c.done
}
