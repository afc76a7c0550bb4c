package mqtt

import (
	"encoding/json"

	"github.com/thethings-go/thethings"
)

// encode validates values and returns the REST write body for them.
// PLACEHOLDER until the shared encoder lands.
func encode(values []thethings.Value, base int) ([]byte, error) {
	type item struct {
		Key      string         `json:"key"`
		Value    any            `json:"value"`
		Geo      *thethings.Geo `json:"geo,omitempty"`
		Datetime string         `json:"datetime,omitempty"`
	}
	items := make([]item, len(values))
	for i, v := range values {
		items[i] = item{Key: v.Key, Value: v.Value, Geo: v.Geo}
		if !v.Datetime.IsZero() {
			items[i].Datetime = thethings.FormatTime(v.Datetime)
		}
	}
	_ = base
	return json.Marshal(map[string]any{"values": items})
}
