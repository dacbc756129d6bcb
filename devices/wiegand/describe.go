package wiegand

import "github.com/edgegw/edgegw/devices"

var _ devices.Describer = (*Reader)(nil)

// Describe implements devices.Describer: a card reader that adds the card's
// facility code, number and frame length.
func (r *Reader) Describe() devices.Description {
	return devices.Description{Identity: true, Values: []devices.Value{
		{Name: "facility", Type: devices.Int}, {Name: "card", Type: devices.Int}, {Name: "bits", Type: devices.Int},
	}}
}
