// Package mfrc522 reads ISO 14443-A tags (MIFARE Classic, Ultralight, NTAG)
// with an NXP MFRC522 reader on SPI through periph's devices/v3/mfrc522
// driver, and reports each tag's UID once per presentation.
//
// Wiring on a Raspberry Pi (the common RC522 module): SDA/NSS → P1_24
// (CE0), SCK → P1_23, MOSI → P1_19, MISO → P1_21, IRQ → P1_18 (GPIO24),
// RST → P1_22 (GPIO25), 3.3 V and GND. The module is 3.3 V only.
package mfrc522

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/spi/spireg"
	periphrc "periph.io/x/devices/v3/mfrc522"
	"periph.io/x/devices/v3/mfrc522/commands"

	"github.com/edgegw/edgegw/boards"
	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/gpio"
	"github.com/edgegw/edgegw/internal/duration"
)

func init() {
	devices.Register(devices.Driver{
		Type:    "mfrc522",
		Summary: "NXP MFRC522 13.56 MHz RFID reader on SPI (periph driver): tag UID, repeats folded by dedupe",
		New:     New,
	})
}

// Config is the mfrc522 part of a [[device]] table.
type Config struct {
	// SPI is the SPI device: "/dev/spidev0.0" or "SPI0.0"; default the
	// board's first SPI device, else /dev/spidev0.0.
	SPI string `toml:"spi"`
	// ResetPin is the RST line (default GPIO25, header P1_22).
	ResetPin string `toml:"reset_pin"`
	// IRQPin is the IRQ line (default GPIO24, header P1_18); periph's driver
	// needs it to learn that a tag answered.
	IRQPin string `toml:"irq_pin"`
	// Dedupe reports a tag held on the reader once per window (default 2s;
	// "0s" reports every read).
	Dedupe *duration.Duration `toml:"dedupe"`
	// AntennaGain is the receiver gain 0..7 (RFCfgReg RxGain: 18 dB … 48 dB;
	// default 4, 33 dB).
	AntennaGain *int `toml:"antenna_gain"`
}

var (
	// pollTimeout bounds one wait for a tag, hence how soon Run sees its
	// context end.
	pollTimeout = 500 * time.Millisecond
	// restAfterRead spaces reads while a tag stays on the reader.
	restAfterRead = 100 * time.Millisecond
)

// maxErrorsInARow ends Run (the gateway reopens the reader) after this many
// failed reads with no success or idle poll in between.
const maxErrorsInARow = 20

// Reader is an mfrc522 device.
type Reader struct {
	spi, rst, irq string
	gain          int
	dedupe        devices.Deduper
	log           *slog.Logger

	reads, dups, errs atomic.Uint64
}

var (
	_ devices.Device  = (*Reader)(nil)
	_ devices.Counter = (*Reader)(nil)
)

// New is the driver constructor.
func New(env devices.Env, decode devices.Decoder) (devices.Device, error) {
	var c Config
	if err := decode(&c); err != nil {
		return nil, err
	}
	r := &Reader{spi: c.SPI, gain: 4, log: env.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.spi == "" {
		r.spi = "/dev/spidev0.0"
		if b, ok := boards.ByName(env.Board); ok && len(b.SPI) > 0 {
			r.spi = b.SPI[0].Path
		}
	}
	if c.ResetPin == "" {
		c.ResetPin = "GPIO25"
	}
	if c.IRQPin == "" {
		c.IRQPin = "GPIO24"
	}
	var err error
	if r.rst, err = gpio.ResolvePin("reset_pin", env.Board, c.ResetPin); err != nil {
		return nil, err
	}
	if r.irq, err = gpio.ResolvePin("irq_pin", env.Board, c.IRQPin); err != nil {
		return nil, err
	}
	if r.rst == r.irq {
		return nil, fmt.Errorf("irq_pin: %q is the same line as reset_pin", c.IRQPin)
	}
	r.dedupe.Window = 2 * time.Second
	if c.Dedupe != nil {
		r.dedupe.Window = c.Dedupe.D() // never negative: duration.Parse refuses it
	}
	if c.AntennaGain != nil {
		if *c.AntennaGain < 0 || *c.AntennaGain > 7 {
			return nil, fmt.Errorf("antenna_gain: %d is out of range; use 0 to 7", *c.AntennaGain)
		}
		r.gain = *c.AntennaGain
	}
	return r, nil
}

// Counters implements devices.Counter.
func (r *Reader) Counters() devices.Stats {
	return devices.Stats{"reads": r.reads.Load(), "duplicates_suppressed": r.dups.Load(), "read_errors": r.errs.Load()}
}

// Run opens the SPI device and pins, checks the chip answers, and reads tags
// until ctx ends.
func (r *Reader) Run(ctx context.Context, emit func(devices.Reading)) error {
	rst, err := gpio.OpenPin("reset_pin", r.rst)
	if err != nil {
		return err
	}
	irq, err := gpio.OpenPin("irq_pin", r.irq)
	if err != nil {
		return err
	}
	port, err := spireg.Open(r.spi)
	if err != nil {
		return fmt.Errorf("mfrc522: open SPI %q: %w (enable it: dtparam=spi=on on a Pi)", r.spi, err)
	}
	defer port.Close()
	dev, err := periphrc.NewSPI(port, rst, irq)
	if err != nil {
		return fmt.Errorf("mfrc522: init on %s: %w", r.spi, err)
	}
	defer dev.Halt() // soft power-down
	// VersionReg (datasheet §9.3.4.8): 0x91 v1.0, 0x92 v2.0; clones report
	// other values. 0x00 or 0xFF means nothing answers on the bus.
	v, err := dev.LowLevel.DevRead(commands.VersionReg)
	if err != nil {
		return fmt.Errorf("mfrc522: read version on %s: %w", r.spi, err)
	}
	if v == 0x00 || v == 0xFF {
		return fmt.Errorf("mfrc522: no MFRC522 answering on %s (version register reads %#02x); check wiring, RST on %s and SPI enabled", r.spi, v, r.rst)
	}
	r.log.Debug("mfrc522 found", "version", fmt.Sprintf("%#02x", v))
	if err := dev.SetAntennaGain(r.gain); err != nil {
		return fmt.Errorf("mfrc522: %w", err)
	}

	failures := 0
	for ctx.Err() == nil {
		// Edges the last read's own transceives raised would make the next
		// wait return at once; drop them (bounded: the kernel queues 16).
		for i := 0; i < 16 && irq.WaitForEdge(0); i++ {
		}
		uid, err := dev.ReadUID(pollTimeout)
		if err != nil {
			if strings.Contains(err.Error(), "timeout waiting for IRQ edge") {
				failures = 0 // idle: no tag
				continue
			}
			r.errs.Add(1) // a tag leaving mid-read, a collision, noise
			failures++
			r.log.Debug("mfrc522 read failed", "err", err)
			if failures >= maxErrorsInARow {
				return fmt.Errorf("mfrc522: %d reads in a row failed on %s, last: %w", failures, r.spi, err)
			}
			continue
		}
		failures = 0
		id := strings.ToUpper(hex.EncodeToString(uid))
		if r.dedupe.Seen(id) {
			r.dups.Add(1)
		} else {
			r.reads.Add(1)
			emit(devices.Reading{Time: time.Now(), UID: id, Fields: []devices.Field{{Name: "uid_bytes", Value: int64(len(uid))}}})
		}
		select {
		case <-ctx.Done():
		case <-time.After(restAfterRead):
		}
	}
	return nil
}
