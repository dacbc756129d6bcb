package mfrc522

import "github.com/edgegw/edgegw/devices"

var _ devices.Describer = (*Reader)(nil)

// Describe implements devices.Describer: a tag reader that adds the UID's length.
func (r *Reader) Describe() devices.Description {
	return devices.Description{Identity: true, Values: []devices.Value{{Name: "uid_bytes", Type: devices.Int}}}
}
