package gpio

import "github.com/edgegw/edgegw/devices"

var (
	_ devices.Describer = (*Input)(nil)
	_ devices.Describer = (*Output)(nil)
)

// Describe implements devices.Describer: a binary input whose "state" is
// true while active.
func (in *Input) Describe() devices.Description {
	return devices.Description{Input: true, Values: []devices.Value{
		{Name: "state", Type: devices.Bool}, {Name: "level", Type: devices.String}, {Name: "edge", Type: devices.String},
	}}
}

// Describe implements devices.Describer: an output driven by "on" and
// "off" commands whose "state" is true while on.
func (o *Output) Describe() devices.Description {
	return devices.Description{Output: true, Values: []devices.Value{
		{Name: "state", Type: devices.Bool}, {Name: "level", Type: devices.String}, {Name: "cause", Type: devices.String},
		{Name: "pulse_ms", Type: devices.Int, Unit: "ms"},
	}}
}
