// Package bme280 reads a Bosch BME280 (temperature, humidity, pressure) or
// BMP280 (no humidity) over I²C through periph's bmxx80 driver, in forced
// mode: one measurement per interval, the sensor asleep in between.
package bme280

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
	"periph.io/x/host/v3"

	"github.com/edgegw/edgegw/boards"
	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/internal/duration"
)

func init() {
	devices.Register(devices.Driver{
		Type:    "bme280",
		Summary: "Bosch BME280/BMP280 over I²C: temperature °C, humidity %RH, pressure hPa",
		New:     New,
	})
}

// Config is the bme280 part of a [[device]] table.
type Config struct {
	// I2C is the bus: "/dev/i2c-1" or "I2C1"; default the board's first
	// header bus, else /dev/i2c-1.
	I2C string `toml:"i2c"`
	// Address is 0x76 (SDO to GND, default) or 0x77 (SDO to VDDIO).
	Address int `toml:"address"`
	// Interval between measurements (default 30s, at least 100ms).
	Interval duration.Duration `toml:"interval"`
}

// maxFailures is how many measurements in a row may fail before Run gives
// up and lets the gateway reopen the bus.
const maxFailures = 3

// Sensor is a bme280 device.
type Sensor struct {
	bus      string
	addr     uint16
	interval time.Duration

	reads, errs atomic.Uint64
}

var (
	_ devices.Device  = (*Sensor)(nil)
	_ devices.Counter = (*Sensor)(nil)
)

// New is the driver constructor.
func New(env devices.Env, decode devices.Decoder) (devices.Device, error) {
	var c Config
	if err := decode(&c); err != nil {
		return nil, err
	}
	s := &Sensor{bus: c.I2C, addr: 0x76, interval: 30 * time.Second}
	if s.bus == "" {
		s.bus = "/dev/i2c-1"
		if b, ok := boards.ByName(env.Board); ok && len(b.I2C) > 0 {
			s.bus = b.I2C[0].Path
		}
	}
	switch c.Address {
	case 0:
	case 0x76, 0x77:
		s.addr = uint16(c.Address)
	default:
		return nil, fmt.Errorf("address: %#x is not a BME280 address; use 0x76 (SDO to GND) or 0x77 (SDO to VDDIO)", c.Address)
	}
	if iv := c.Interval.D(); iv != 0 {
		if iv < 100*time.Millisecond {
			return nil, fmt.Errorf("interval: %s is too short; use at least 100ms", iv)
		}
		s.interval = iv
	}
	return s, nil
}

// Counters implements devices.Counter.
func (s *Sensor) Counters() devices.Stats {
	return devices.Stats{"reads": s.reads.Load(), "read_errors": s.errs.Load()}
}

// Run opens the bus, checks the chip id, then measures now and every
// interval.
func (s *Sensor) Run(ctx context.Context, emit func(devices.Reading)) error {
	if _, err := host.Init(); err != nil { // idempotent; registers /dev/i2c-*
		return fmt.Errorf("bme280: periph host init: %w", err)
	}
	bus, err := i2creg.Open(s.bus)
	if err != nil {
		return fmt.Errorf("bme280: open I2C bus %q: %w (enable it: dtparam=i2c_arm=on on a Pi)", s.bus, err)
	}
	defer bus.Close()
	opts := bmxx80.DefaultOpts // 4× oversampling of each, no IIR filter
	dev, err := bmxx80.NewI2C(bus, s.addr, &opts)
	if err != nil {
		return fmt.Errorf("bme280: no BME280/BMP280 at %#x on %s: %w", s.addr, s.bus, err)
	}
	defer dev.Halt()
	humidity := strings.HasPrefix(dev.String(), "BME280")

	t := time.NewTicker(s.interval)
	defer t.Stop()
	failures := 0
	for {
		var e physic.Env
		if err := dev.Sense(&e); err != nil {
			s.errs.Add(1)
			failures++
			if failures >= maxFailures {
				return fmt.Errorf("bme280: %d measurements in a row failed, last: %w", failures, err)
			}
		} else {
			failures = 0
			s.reads.Add(1)
			emit(reading(e, humidity))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func reading(e physic.Env, humidity bool) devices.Reading {
	f := []devices.Field{
		{Name: "temperature", Value: round2(float64(e.Temperature-physic.ZeroCelsius) / float64(physic.Celsius)), Unit: "°C"},
	}
	if humidity {
		f = append(f, devices.Field{Name: "humidity", Value: round2(float64(e.Humidity) / float64(physic.PercentRH)), Unit: "%RH"})
	}
	f = append(f, devices.Field{Name: "pressure", Value: round2(float64(e.Pressure) / float64(100*physic.Pascal)), Unit: "hPa"})
	return devices.Reading{Time: time.Now(), Fields: f}
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }
