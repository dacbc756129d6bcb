package bme280

import "github.com/edgegw/edgegw/devices"

var _ devices.Describer = (*Sensor)(nil)

// Describe implements devices.Describer. Humidity comes from a BME280 only
// (a BMP280 has none), so a BMP280's humidity entity stays unknown.
func (s *Sensor) Describe() devices.Description {
	return devices.Description{Values: []devices.Value{
		{Name: "temperature", Type: devices.Float, Unit: "°C", Class: "temperature", State: "measurement"},
		{Name: "humidity", Type: devices.Float, Unit: "%RH", Class: "humidity", State: "measurement"},
		{Name: "pressure", Type: devices.Float, Unit: "hPa", Class: "atmospheric_pressure", State: "measurement"},
	}}
}
