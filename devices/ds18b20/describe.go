package ds18b20

import "github.com/edgegw/edgegw/devices"

var _ devices.Describer = (*Bus)(nil)

// Describe implements devices.Describer: each reading is one probe's
// temperature with the probe's ROM id.
func (b *Bus) Describe() devices.Description {
	return devices.Description{Values: []devices.Value{
		{Name: "rom", Type: devices.String},
		{Name: "temperature", Type: devices.Float, Unit: "°C", Class: "temperature", State: "measurement"},
	}}
}
