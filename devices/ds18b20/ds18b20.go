// Package ds18b20 reads DS18B20 (and other w1_therm) 1-Wire temperature
// probes through the kernel's w1 sysfs: every probe on the bus is read each
// interval and reported as its own Reading, keyed by its ROM id.
//
// Enable the bus on a Raspberry Pi with dtoverlay=w1-gpio (data on GPIO4,
// header P1_7, with a 4.7 kΩ pull-up to 3.3 V).
package ds18b20

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/internal/duration"
)

func init() {
	devices.Register(devices.Driver{
		Type:    "ds18b20",
		Summary: "1-Wire temperature probes via the kernel's w1 sysfs; one reading per probe, keyed by ROM id; CRC failures counted",
		New:     New,
	})
}

// DefaultDir is where the kernel lists 1-Wire slaves.
const DefaultDir = "/sys/bus/w1/devices"

// Config is the ds18b20 part of a [[device]] table.
type Config struct {
	// Dir is the w1 devices directory (default /sys/bus/w1/devices).
	Dir string `toml:"dir"`
	// Interval between reads of all probes (default 30s, at least 1s: each
	// probe takes up to 750 ms to convert).
	Interval duration.Duration `toml:"interval"`
	// Probes, when set, limits reading to these ROM ids ("28-0316a2794aff").
	Probes []string `toml:"probes"`
}

// families are the w1_therm slave families whose w1_slave has this format:
// DS18S20 (10), DS1822 (22), DS18B20 (28), DS1825 (3b), DS28EA00 (42).
var families = map[string]string{"10": "DS18S20", "22": "DS1822", "28": "DS18B20", "3b": "DS1825", "42": "DS28EA00"}

var romRE = regexp.MustCompile(`^([0-9a-f]{2})-[0-9a-f]{12}$`)

// suspectBelow: an 85.000 °C reading is believed only if the probe's
// previous good reading was at least this warm.
const suspectBelow = 75000 // m°C

// Bus is a ds18b20 device: all probes under one w1 directory.
type Bus struct {
	dir      string
	interval time.Duration
	only     map[string]bool
	log      *slog.Logger

	mu   sync.Mutex
	last map[string]int64 // ROM → last good m°C

	reads, crc, noResponse, format, readErrors, suspect atomic.Uint64
	warnedEmpty                                         bool
}

var (
	_ devices.Device  = (*Bus)(nil)
	_ devices.Counter = (*Bus)(nil)
)

// New is the driver constructor.
func New(env devices.Env, decode devices.Decoder) (devices.Device, error) {
	var c Config
	if err := decode(&c); err != nil {
		return nil, err
	}
	b := &Bus{dir: DefaultDir, interval: 30 * time.Second, log: env.Logger, last: map[string]int64{}}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if c.Dir != "" {
		if !filepath.IsAbs(c.Dir) {
			return nil, fmt.Errorf("dir: %q must be an absolute path", c.Dir)
		}
		b.dir = filepath.Clean(c.Dir)
	}
	if iv := c.Interval.D(); iv != 0 {
		if iv < time.Second {
			return nil, fmt.Errorf("interval: %s is too short; use at least 1s (a conversion takes up to 750ms per probe)", iv)
		}
		b.interval = iv
	}
	if len(c.Probes) > 0 {
		b.only = map[string]bool{}
		for i, p := range c.Probes {
			p = strings.ToLower(p)
			m := romRE.FindStringSubmatch(p)
			if m == nil || families[m[1]] == "" {
				return nil, fmt.Errorf("probes[%d]: %q is not a w1 thermometer ROM id such as \"28-0316a2794aff\"", i, c.Probes[i])
			}
			b.only[p] = true
		}
	}
	return b, nil
}

// Counters implements devices.Counter.
func (b *Bus) Counters() devices.Stats {
	return devices.Stats{
		"reads":       b.reads.Load(),
		"bad_crc":     b.crc.Load(),
		"no_response": b.noResponse.Load(),
		"bad_format":  b.format.Load(),
		"read_errors": b.readErrors.Load(),
		"suspect_85c": b.suspect.Load(),
	}
}

// Run reads all probes now and then every interval.
func (b *Bus) Run(ctx context.Context, emit func(devices.Reading)) error {
	if fi, err := os.Stat(b.dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("ds18b20: %s is not there; load the w1 bus (dtoverlay=w1-gpio on a Pi, or modprobe w1-gpio w1-therm)", b.dir)
	}
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		if err := b.Scan(ctx, emit); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Scan reads every probe once and emits one Reading per good read.
func (b *Bus) Scan(ctx context.Context, emit func(devices.Reading)) error {
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return fmt.Errorf("ds18b20: list %s: %w", b.dir, err)
	}
	var roms []string
	for _, e := range entries {
		m := romRE.FindStringSubmatch(e.Name())
		if m == nil || families[m[1]] == "" {
			continue // w1_bus_master1, other families
		}
		if b.only != nil && !b.only[e.Name()] {
			continue
		}
		roms = append(roms, e.Name())
	}
	sort.Strings(roms)
	if len(roms) == 0 {
		if !b.warnedEmpty {
			b.log.Warn("no 1-Wire thermometers found", "dir", b.dir)
			b.warnedEmpty = true
		}
		return nil
	}
	b.warnedEmpty = false
	for _, rom := range roms {
		if ctx.Err() != nil {
			return nil
		}
		b.readProbe(rom, emit)
	}
	return nil
}

func (b *Bus) readProbe(rom string, emit func(devices.Reading)) {
	raw, err := os.ReadFile(filepath.Join(b.dir, rom, "w1_slave"))
	if err != nil {
		b.readErrors.Add(1) // unplugged between listing and reading, or a bus error
		b.log.Debug("w1 read failed", "rom", rom, "err", err)
		return
	}
	s, err := ParseW1Slave(raw)
	switch {
	case errors.Is(err, ErrCRC):
		b.crc.Add(1)
		b.log.Debug("w1 CRC failure", "rom", rom, "err", err)
		return
	case errors.Is(err, ErrNoResponse):
		b.noResponse.Add(1)
		return
	case err != nil:
		b.format.Add(1)
		b.log.Debug("w1 unreadable", "rom", rom, "err", err)
		return
	}
	b.mu.Lock()
	prev, seen := b.last[rom]
	if s.IsPowerOnValue() && (!seen || prev < suspectBelow) {
		b.mu.Unlock()
		b.suspect.Add(1)
		b.log.Debug("w1 85 °C power-on value skipped", "rom", rom)
		return
	}
	b.last[rom] = s.MilliC
	b.mu.Unlock()
	b.reads.Add(1)
	emit(devices.Reading{
		Time: time.Now(),
		Fields: []devices.Field{
			{Name: "rom", Value: rom},
			{Name: "temperature", Value: float64(s.MilliC) / 1000, Unit: "°C"},
		},
	})
}
