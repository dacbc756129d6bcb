package rfidascii

import (
	"time"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
)

func init() {
	devices.Register(devices.Driver{Type: ID12.Type, Summary: "ID Innovations ID-12 RFID reader (ASCII output, 9600 8N1)", New: NewDriver(ID12)})
	devices.Register(devices.Driver{Type: ID20.Type, Summary: "ID Innovations ID-20 RFID reader (ASCII output, 9600 8N1)", New: NewDriver(ID20)})
}

// DefaultDedupe is the dedupe window when the key is absent: these readers
// repeat a held tag's frame several times a second.
const DefaultDedupe = time.Second

// Config is the `[[device]]` table of an ASCII RFID reader.
type Config struct {
	serialport.Config
	// Dedupe reports a tag held on the reader once per window; "0s" turns
	// suppression off. Absent: DefaultDedupe.
	Dedupe *serialport.Duration `toml:"dedupe"`
}

// NewDriver returns the constructor for readers of format f: 9600 8N1 unless
// configured otherwise.
func NewDriver(f Format) devices.Constructor {
	return func(env devices.Env, decode devices.Decoder) (devices.Device, error) {
		var cfg Config
		if err := decode(&cfg); err != nil {
			return nil, err
		}
		return New(env, f, cfg)
	}
}

// New validates cfg and returns the device (no I/O).
func New(env devices.Env, f Format, cfg Config) (*serialport.Stream, error) {
	cfg.Config = cfg.Config.WithDefaults(serialport.Defaults8N1(9600))
	if err := cfg.Config.Validate(); err != nil {
		return nil, err
	}
	window := DefaultDedupe
	if cfg.Dedupe != nil {
		window = cfg.Dedupe.D()
	}
	c := new(serialport.Counters)
	return &serialport.Stream{
		Port:   cfg.Config,
		Parser: NewParser(f, c),
		Counts: c,
		Dedupe: &devices.Deduper{Window: window},
		Logger: env.Logger,
		Desc:   devices.Description{Identity: true},
	}, nil
}
