package pn532

import "github.com/edgegw/edgegw/devices"

var _ devices.Describer = (*Reader)(nil)

// Describe implements devices.Describer: a tag reader that adds ATQA and SAK.
func (r *Reader) Describe() devices.Description {
	return devices.Description{Identity: true, Values: []devices.Value{
		{Name: "atqa", Type: devices.String}, {Name: "sak", Type: devices.String},
	}}
}
