package wire

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCounterCountsArrayElementsAsTheyArrive(t *testing.T) {
	in := `[{"k":"a,]}","v":[1,2,{"x":"\"],"}]}, {"k":"b"} ,3,"s,]" ,{"k":"c"}] trailing`
	for step := 1; step <= len(in); step++ {
		var c Counter
		var n int
		var closed bool
		for end := step; ; end += step {
			n, closed = c.Scan([]byte(in[:min(end, len(in))]))
			if closed || end >= len(in) {
				break
			}
		}
		require.True(t, closed, "step %d", step)
		assert.Equal(t, 5, n, "step %d", step)
	}
	// Elements complete so far, before the array ends.
	var c Counter
	n, closed := c.Scan([]byte(`[{"a":1},{"b":2},{"c":`))
	assert.Equal(t, 2, n)
	assert.False(t, closed)
	n, closed = c.Scan([]byte(`[]`[:1]))
	assert.Equal(t, 2, n, "a shorter slice scans nothing again")
	assert.False(t, closed)
}

func TestDecodeFrameEachKeepsTheGoodItems(t *testing.T) {
	items, err := DecodeFrameEach([]byte(`[{"key":"a","value":1},{"key":5},{"key":"b","value":"x"},{"key":"c","value":01}]`))
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrSyntax)
	assert.True(t, strings.HasPrefix(err.Error(), "thethings: data frame: 2 item(s) not decoded"), err.Error())
	require.Len(t, items, 2)
	assert.Equal(t, "a", items[0].Key)
	assert.Equal(t, "b", items[1].Key)

	// A frame that decodes whole is DecodeFrame's answer.
	items, err = DecodeFrameEach([]byte(`[{"key":"a","value":1}]`))
	require.NoError(t, err)
	assert.Len(t, items, 1)

	// Broken array structure: the items before the break.
	items, err = DecodeFrameEach([]byte(`[{"key":"a","value":1} {"key":"b","value":2}]`))
	require.Error(t, err)
	assert.Len(t, items, 1)
}
