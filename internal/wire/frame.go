package wire

// DecodeFrame decodes a subscription data frame, a JSON array of items
// {"key":..,"value":..[,"datetime":..][,"geo":..]}, as Decoder does with
// OptionalTime: numbers keep their exact text as json.Number,
// Time is "datetime" when it is in the platform's own form and RawTime
// holds any other form; both are zero when the item has no datetime.
func DecodeFrame(frame []byte) ([]Item, error) {
	d := Decoder{OptionalTime: true}
	return d.Decode(frame, 0)
}

// DecodeFrameEach decodes a data frame like DecodeFrame, but item by item
// when the frame as a whole does not decode: the items that decode are
// returned, in order, with an error counting those that do not. A frame
// whose array structure itself is broken gives the items before the break.
func DecodeFrameEach(frame []byte) ([]Item, error) {
	items, err := DecodeFrame(frame)
	if err == nil {
		return items, nil
	}
	i := SkipWS(frame, 0)
	if i >= len(frame) || frame[i] != '[' {
		return nil, err
	}
	items = items[:0]
	bad := 0
	var first error
	fail := func(e error) {
		bad++
		if first == nil {
			first = e
		}
	}
	var one []byte
	for i = SkipWS(frame, i+1); i < len(frame) && frame[i] != ']'; {
		end, serr := SkipValue(frame, i)
		if serr != nil {
			fail(serr)
			break
		}
		one = append(append(append(one[:0], '['), frame[i:end]...), ']')
		if got, ierr := DecodeFrame(one); ierr != nil {
			fail(ierr)
		} else {
			items = append(items, got...)
		}
		i = SkipWS(frame, end)
		if i < len(frame) && frame[i] == ',' {
			i = SkipWS(frame, i+1)
		} else if i >= len(frame) || frame[i] != ']' {
			fail(syntaxErr(frame, i))
			break
		}
	}
	if bad == 0 {
		return items, err // each item decodes alone: keep the frame's verdict
	}
	return items, Errorf("thethings: data frame: %d item(s) not decoded: %w", bad, first)
}
