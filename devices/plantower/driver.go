package plantower

import (
	"strings"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
)

func init() {
	for _, typ := range []string{"pms5003", "pms7003"} {
		devices.Register(devices.Driver{
			Type:    typ,
			Summary: "Plantower " + strings.ToUpper(typ) + " particulate sensor (UART 9600 8N1): PM1.0/2.5/10 and particle counts",
			New:     newDevice,
		})
	}
}

// Config is the `[[device]]` table of a Plantower sensor: only the port
// settings (9600 8N1 by default).
type Config struct {
	serialport.Config
}

func newDevice(env devices.Env, decode devices.Decoder) (devices.Device, error) {
	var cfg Config
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	return New(env, cfg)
}

// New validates cfg (no I/O) and returns the device.
func New(env devices.Env, cfg Config) (*serialport.Stream, error) {
	cfg.Config = cfg.Config.WithDefaults(serialport.Defaults8N1(9600))
	if err := cfg.Config.Validate(); err != nil {
		return nil, err
	}
	c := new(serialport.Counters)
	return &serialport.Stream{Port: cfg.Config, Parser: &Parser{Counts: c}, Counts: c, Logger: env.Logger, Desc: Description()}, nil
}

// haClass is Home Assistant's device class of the mass concentrations.
var haClass = map[string]string{"pm1_0": "pm1", "pm2_5": "pm25", "pm10": "pm10", "pm1_0_cf1": "pm1", "pm2_5_cf1": "pm25", "pm10_cf1": "pm10"}

// Description is what the sensor reports: 6 mass concentrations and 6
// particle counts per frame.
func Description() devices.Description {
	var d devices.Description
	for k, name := range fieldNames {
		unit := UnitMass
		if k >= 6 {
			unit = UnitCount
		}
		d.Values = append(d.Values, devices.Value{Name: name, Type: devices.Int, Unit: unit, Class: haClass[name], State: "measurement"})
	}
	return d
}
