package wire

// DecodeFrame decodes a subscription data frame, a JSON array of items
// {"key":..,"value":..[,"datetime":..][,"geo":..]}, as Decoder does with
// Lenient and OptionalTime: numbers keep their exact text as json.Number,
// Time is "datetime" when it is in the platform's own form and RawTime
// holds any other form; both are zero when the item has no datetime.
func DecodeFrame(frame []byte) ([]Item, error) {
	d := Decoder{Lenient: true, OptionalTime: true}
	return d.Decode(frame, 0)
}
