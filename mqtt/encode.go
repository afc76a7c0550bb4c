package mqtt

import (
	"time"

	"github.com/thethings-go/thethings"
	"github.com/thethings-go/thethings/internal/wire"
)

// encode validates values and returns their REST write body, with the
// encoder thethings.Client.Write uses. A refused value's index in the
// error counts from base.
func encode(values []thethings.Value, base int) ([]byte, error) {
	return wire.AppendBatch(nil, len(values), base, func(i int) (string, any, *wire.Geo, time.Time) {
		v := &values[i]
		return v.Key, v.Value, (*wire.Geo)(v.Geo), v.Datetime
	}, false)
}
