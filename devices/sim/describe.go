package sim

import "github.com/edgegw/edgegw/devices"

var _ devices.Describer = (*Device)(nil)

// Describe implements devices.Describer for the configured kind.
func (d *Device) Describe() devices.Description {
	var desc devices.Description
	if d.cfg.Kind != "sensor" {
		desc.Identity = true
	}
	if d.cfg.Kind != "rfid" {
		desc.Values = []devices.Value{
			{Name: "temperature", Type: devices.Float, Unit: "°C", Class: "temperature", State: "measurement"},
			{Name: "humidity", Type: devices.Float, Unit: "%RH", Class: "humidity", State: "measurement"},
		}
	}
	return desc
}
