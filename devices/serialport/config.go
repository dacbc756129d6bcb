// Package serialport holds what every serial device driver shares: the port
// settings of a `[[device]]` table (`port`, `baud`, `data_bits`, `parity`,
// `stop_bits`, `read_timeout`) with their validation, opening the port with
// go.bug.st/serial, a Duration type for TOML, bad-frame counters, and Stream,
// the Run loop of a driver that only listens.
package serialport

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.bug.st/serial"
)

// StandardBauds are the rates a `baud` key accepts.
var StandardBauds = []int{1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400, 460800, 921600}

// Parities are the values a `parity` key accepts.
var Parities = []string{"none", "even", "odd", "mark", "space"}

// Config is the serial part of a device's configuration. Drivers embed it in
// their own config struct so its keys sit directly in the `[[device]]` table.
type Config struct {
	// Port is the device path, e.g. /dev/serial0 or /dev/serial/by-id/usb-…;
	// symlinks are followed by the open.
	Port string `toml:"port"`
	// Baud is the line rate, one of StandardBauds.
	Baud int `toml:"baud"`
	// DataBits is 5, 6, 7 or 8.
	DataBits int `toml:"data_bits"`
	// Parity is none, even, odd, mark or space.
	Parity string `toml:"parity"`
	// StopBits is 1, 1.5 (only with data_bits = 5, as UARTs do) or 2.
	StopBits float64 `toml:"stop_bits"`
	// ReadTimeout bounds one read from the port; request/response drivers
	// (pn532, modbus) use it as the reply timeout.
	ReadTimeout Duration `toml:"read_timeout"`
}

// WithDefaults returns c with every zero field taken from def.
func (c Config) WithDefaults(def Config) Config {
	if c.Port == "" {
		c.Port = def.Port
	}
	if c.Baud == 0 {
		c.Baud = def.Baud
	}
	if c.DataBits == 0 {
		c.DataBits = def.DataBits
	}
	if c.Parity == "" {
		c.Parity = def.Parity
	}
	if c.StopBits == 0 {
		c.StopBits = def.StopBits
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = def.ReadTimeout
	}
	return c
}

// Defaults8N1 is 8 data bits, no parity, 1 stop bit and a 1 s read timeout at
// the given rate: what most serial sensors speak.
func Defaults8N1(baud int) Config {
	return Config{Baud: baud, DataBits: 8, Parity: "none", StopBits: 1, ReadTimeout: Duration(time.Second)}
}

// Validate checks every key without touching the port. The error joins one
// line per bad key, each naming the key and what is allowed.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.Port) == "" {
		errs = append(errs, errors.New("port: missing; set the serial device path, e.g. \"/dev/serial0\" or \"/dev/serial/by-id/…\""))
	}
	if !slices.Contains(StandardBauds, c.Baud) {
		errs = append(errs, fmt.Errorf("baud: %d is not a standard rate (one of %s)", c.Baud, joinInts(StandardBauds)))
	}
	if c.DataBits < 5 || c.DataBits > 8 {
		errs = append(errs, fmt.Errorf("data_bits: %d is not allowed (one of 5, 6, 7, 8)", c.DataBits))
	}
	if !slices.Contains(Parities, c.Parity) {
		errs = append(errs, fmt.Errorf("parity: %q is not allowed (one of %s)", c.Parity, strings.Join(Parities, ", ")))
	}
	switch c.StopBits {
	case 1, 2:
	case 1.5:
		if c.DataBits != 5 {
			errs = append(errs, fmt.Errorf("stop_bits: 1.5 needs data_bits = 5 (a UART sends 1.5 stop bits only with 5-bit characters); use 1 or 2"))
		}
	default:
		errs = append(errs, fmt.Errorf("stop_bits: %g is not allowed (one of 1, 1.5, 2)", c.StopBits))
	}
	if c.ReadTimeout < 0 {
		errs = append(errs, fmt.Errorf("read_timeout: %s is negative", time.Duration(c.ReadTimeout)))
	}
	return errors.Join(errs...)
}

// Mode is the go.bug.st/serial mode for a validated Config.
func (c Config) Mode() *serial.Mode {
	m := &serial.Mode{BaudRate: c.Baud, DataBits: c.DataBits}
	switch c.Parity {
	case "even":
		m.Parity = serial.EvenParity
	case "odd":
		m.Parity = serial.OddParity
	case "mark":
		m.Parity = serial.MarkParity
	case "space":
		m.Parity = serial.SpaceParity
	default:
		m.Parity = serial.NoParity
	}
	// termios has one CSTOPB bit: with 5-bit characters it means 1.5.
	if c.StopBits != 1 {
		m.StopBits = serial.TwoStopBits
	}
	return m
}

// Open opens and configures the port. The error names the port.
func Open(c Config) (serial.Port, error) {
	p, err := serial.Open(c.Port, c.Mode())
	if err != nil {
		return nil, fmt.Errorf("serial port %s: open: %w", c.Port, err)
	}
	if c.ReadTimeout > 0 {
		if err := p.SetReadTimeout(time.Duration(c.ReadTimeout)); err != nil {
			p.Close()
			return nil, fmt.Errorf("serial port %s: set read timeout: %w", c.Port, err)
		}
	}
	return p, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
