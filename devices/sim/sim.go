// Package sim is a simulated device for demos, tests and benchmarks: RFID
// reads of a rotating set of tags and temperature/humidity values that drift,
// at a configured interval.
package sim

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/internal/duration"
)

func init() {
	devices.Register(devices.Driver{Type: "sim", Summary: "simulated RFID reads and sensor values (demo, tests)", New: New})
}

// Config is the sim device's own keys.
type Config struct {
	// Kind is "rfid", "sensor" or "both" (alternating).
	Kind string `toml:"kind"`
	// Interval between readings (default "1s").
	Interval string `toml:"interval"`
	// Count stops after this many readings (0 = no end).
	Count int `toml:"count"`
	// Tags are the UIDs to cycle through (default: three made-up tags).
	Tags []string `toml:"tags"`
}

// Device is a running simulation.
type Device struct {
	cfg      Config
	interval time.Duration
	emitted  atomic.Uint64
}

var _ devices.Device = (*Device)(nil)
var _ devices.Counter = (*Device)(nil)

// New checks the configuration.
func New(env devices.Env, decode devices.Decoder) (devices.Device, error) {
	cfg := Config{Kind: "both", Interval: "1s"}
	if err := decode(&cfg); err != nil {
		return nil, err
	}
	switch cfg.Kind {
	case "rfid", "sensor", "both":
	default:
		return nil, fmt.Errorf("kind: %q is not allowed: \"rfid\", \"sensor\" or \"both\"", cfg.Kind)
	}
	iv, err := duration.Parse(cfg.Interval)
	if err != nil || iv <= 0 {
		return nil, fmt.Errorf("interval: %q is not a positive duration such as \"1s\" or \"10ms\"", cfg.Interval)
	}
	if cfg.Count < 0 {
		return nil, fmt.Errorf("count: %d must not be negative (0 means no end)", cfg.Count)
	}
	if len(cfg.Tags) == 0 {
		cfg.Tags = []string{"0A00C1F2E3", "1B00D2A4B5", "2C00E3B6C7"}
	}
	return &Device{cfg: cfg, interval: iv}, nil
}

// Run emits readings until ctx ends or Count is reached.
func (d *Device) Run(ctx context.Context, emit func(devices.Reading)) error {
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		n := d.emitted.Load()
		if d.cfg.Count > 0 && n >= uint64(d.cfg.Count) {
			<-ctx.Done()
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		emit(d.reading(n))
		d.emitted.Add(1)
	}
}

func (d *Device) reading(n uint64) devices.Reading {
	rfid := d.cfg.Kind == "rfid" || (d.cfg.Kind == "both" && n%2 == 0)
	if rfid {
		return devices.Reading{UID: d.cfg.Tags[int(n/2)%len(d.cfg.Tags)]}
	}
	x := float64(n) / 20
	return devices.Reading{Fields: []devices.Field{
		{Name: "temperature", Value: math.Round((21.5+2*math.Sin(x))*100) / 100, Unit: "°C"},
		{Name: "humidity", Value: math.Round((45+5*math.Cos(x))*10) / 10, Unit: "%RH"},
	}}
}

// Counters reports how many readings were made.
func (d *Device) Counters() devices.Stats {
	return devices.Stats{"emitted": d.emitted.Load()}
}
