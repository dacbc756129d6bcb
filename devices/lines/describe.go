package lines

import "github.com/edgegw/edgegw/devices"

// Description is what a lines sensor reports: its configured fields, each
// with the device class its unit implies. Without fields nothing is known
// before the lines arrive, so nothing is described.
func (c Config) Description() devices.Description {
	var d devices.Description
	for _, name := range sortedFields(c.Fields) {
		f := c.Fields[name]
		typ := devices.Float
		switch f.Type {
		case "int":
			typ = devices.Int
		case "bool":
			typ = devices.Bool
		case "string":
			typ = devices.String
		}
		d.Values = append(d.Values, devices.MeasuredValue(name, typ, f.Unit))
	}
	return d
}
