package modbus

import "github.com/edgegw/edgegw/devices"

var _ devices.Describer = (*Bus)(nil)

// Describe implements devices.Describer for a bus with one slave: its
// registers, each with the device class its unit implies. The readings of
// several slaves share one topic with different values, so such a bus is
// not described (a consumer reading one slave's value would find it
// missing from the others' readings).
func (b *Bus) Describe() devices.Description {
	var d devices.Description
	if len(b.cfg.Slaves) != 1 {
		return d
	}
	d.Values = append(d.Values, devices.Value{Name: "slave", Type: devices.Int})
	for _, r := range b.cfg.Slaves[0].Registers {
		typ := devices.Int
		switch {
		case r.Table == "coil" || r.Table == "discrete":
			typ = devices.Bool
		case r.Type == "float32" || r.Scale != nil || r.Offset != 0:
			typ = devices.Float
		}
		d.Values = append(d.Values, devices.MeasuredValue(r.Name, typ, r.Unit))
	}
	return d
}
