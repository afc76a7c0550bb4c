package thethings_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thethings-go/thethings"
)

func TestValueTextIsNoStringer(t *testing.T) {
	t.Parallel()
	v := thethings.Value{Key: "k", Value: 21.5}
	s, err := v.Text()
	require.NoError(t, err)
	assert.Equal(t, "21.5", s)
	_, isStringer := any(v).(fmt.Stringer)
	assert.False(t, isStringer)
	assert.Contains(t, fmt.Sprintf("%v", v), "21.5", "%v prints the fields")
	_, err = thethings.Value{Key: "k", Value: map[string]any{}}.Text()
	assert.ErrorIs(t, err, thethings.ErrInvalidValue)
}
