package nmea

import (
	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
)

// Type is the registered device type.
const Type = "nmea"

func init() {
	devices.Register(devices.Driver{
		Type:    Type,
		Summary: "NMEA 0183 GPS receiver (UART, 9600 8N1 by default): position, fix, satellites, UTC from GGA and RMC",
		New: func(env devices.Env, decode devices.Decoder) (devices.Device, error) {
			var cfg Config
			if err := decode(&cfg); err != nil {
				return nil, err
			}
			return New(env, cfg)
		},
	})
}

// Config is the `[[device]]` table of a GPS receiver: the port settings,
// 9600 8N1 by default (u-blox); older receivers use baud = 4800.
type Config struct {
	serialport.Config
}

// New validates cfg (no I/O) and returns the device.
func New(env devices.Env, cfg Config) (*serialport.Stream, error) {
	cfg.Config = cfg.Config.WithDefaults(serialport.Defaults8N1(9600))
	if err := cfg.Config.Validate(); err != nil {
		return nil, err
	}
	c := new(serialport.Counters)
	return &serialport.Stream{Port: cfg.Config, Parser: &Parser{Counts: c}, Counts: c, Logger: env.Logger}, nil
}

// Parser splits lines and parses sentences. It implements serialport.Parser.
type Parser struct {
	Counts *serialport.Counters
	lines  serialport.LineSplitter
}

// Reset drops a partial line.
func (p *Parser) Reset() { p.lines.Reset() }

// Feed implements serialport.Parser.
func (p *Parser) Feed(b []byte, emit func(devices.Reading)) {
	p.lines.Max = 120 // NMEA says 82; some receivers send longer proprietary lines
	p.lines.Feed(b, func(line []byte) {
		if len(line) == 0 {
			return
		}
		r, ok, err := Parse(string(line))
		switch {
		case err != nil:
			p.Counts.Inc(Reason(err))
		case !ok:
			p.Counts.Inc(Ignored)
		default:
			emit(r)
		}
	}, func() { p.Counts.Inc(BadFrame) })
}
