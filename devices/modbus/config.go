// Package modbus is a Modbus RTU master over RS-485 (type "modbus"), built
// on github.com/simonvetter/modbus: it polls holding and input registers,
// coils and discrete inputs of each configured slave on that slave's
// interval, decodes int16, uint16, int32, uint32 and float32 values with the
// configured byte and word order, applies scale and offset, and emits one
// reading per slave poll. Timeouts, exception responses and bad CRCs are
// counted and logged (once per change of a slave's state); they never stop
// the poll loop.
package modbus

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/edgegw/edgegw/devices/serialport"
)

// Allowed values.
var (
	Tables     = []string{"holding", "input", "coil", "discrete"}
	ValueTypes = []string{"int16", "uint16", "int32", "uint32", "float32"}
	ByteOrders = []string{"big", "little"}
	WordOrders = []string{"high_first", "low_first"}
)

// Config is the `[[device]]` table of a Modbus RTU bus.
type Config struct {
	serialport.Config
	// Interval is the default poll interval of every slave (default 10s).
	Interval serialport.Duration `toml:"interval"`
	// Slaves are the `[[device.slave]]` tables.
	Slaves []Slave `toml:"slave"`
}

// Slave is one `[[device.slave]]` table.
type Slave struct {
	ID       int                 `toml:"id"`       // unit id, 1 … 247
	Interval serialport.Duration `toml:"interval"` // default: the device's interval
	// Registers are the `[[device.slave.register]]` tables.
	Registers []Register `toml:"register"`
}

// Register is one value to poll.
type Register struct {
	Name      string   `toml:"name"`       // payload key, snake_case
	Table     string   `toml:"table"`      // holding (default), input, coil, discrete
	Address   int      `toml:"address"`    // 0 … 65535, the PDU address (register 40001 is holding address 0)
	Type      string   `toml:"type"`       // int16, uint16 (default), int32, uint32, float32; ignored for coil/discrete
	ByteOrder string   `toml:"byte_order"` // big (default, AB) or little (BA) within each register
	WordOrder string   `toml:"word_order"` // high_first (default) or low_first, for 32-bit types
	Scale     *float64 `toml:"scale"`      // value = raw × scale + offset (default 1)
	Offset    float64  `toml:"offset"`
	Unit      string   `toml:"unit"`
}

func (r Register) words() int {
	if strings.HasSuffix(r.Type, "32") {
		return 2
	}
	return 1
}

func oneOf(key, v string, allowed []string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf("%s: %q is not allowed (one of %s)", key, v, strings.Join(allowed, ", "))
}

// validate fills defaults and checks every key, naming it.
func (c *Config) validate() error {
	def := serialport.Defaults8N1(9600)
	def.ReadTimeout = serialport.Duration(500 * time.Millisecond)
	c.Config = c.Config.WithDefaults(def)
	if c.Interval == 0 {
		c.Interval = serialport.Duration(10 * time.Second)
	}
	var errs []error
	if err := c.Config.Validate(); err != nil {
		errs = append(errs, err)
	} else {
		if c.Parity == "mark" || c.Parity == "space" {
			errs = append(errs, fmt.Errorf("parity: %q is not supported for Modbus RTU (one of none, even, odd)", c.Parity))
		}
		if c.StopBits == 1.5 {
			errs = append(errs, errors.New("stop_bits: 1.5 is not supported for Modbus RTU (1 or 2)"))
		}
		if c.DataBits != 8 {
			errs = append(errs, fmt.Errorf("data_bits: %d; Modbus RTU uses 8", c.DataBits))
		}
	}
	if c.Interval.D() < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("interval: %s is too short (at least 10ms)", c.Interval.D()))
	}
	if len(c.Slaves) == 0 {
		errs = append(errs, errors.New("slave: no [[device.slave]] table; add one with id and at least one [[device.slave.register]]"))
	}
	ids := map[int]bool{}
	for i := range c.Slaves {
		s := &c.Slaves[i]
		p := fmt.Sprintf("slave[%d]", i)
		if s.ID < 1 || s.ID > 247 {
			errs = append(errs, fmt.Errorf("%s.id: %d is out of range (1 … 247)", p, s.ID))
		} else if ids[s.ID] {
			errs = append(errs, fmt.Errorf("%s.id: %d is configured twice", p, s.ID))
		}
		ids[s.ID] = true
		if s.Interval == 0 {
			s.Interval = c.Interval
		} else if s.Interval.D() < 10*time.Millisecond {
			errs = append(errs, fmt.Errorf("%s.interval: %s is too short (at least 10ms)", p, s.Interval.D()))
		}
		if len(s.Registers) == 0 {
			errs = append(errs, fmt.Errorf("%s.register: none; add [[device.slave.register]] tables", p))
		}
		names := map[string]bool{}
		for j := range s.Registers {
			r := &s.Registers[j]
			rp := fmt.Sprintf("%s.register[%d]", p, j)
			if r.Table == "" {
				r.Table = "holding"
			}
			if r.Type == "" {
				r.Type = "uint16"
			}
			if r.ByteOrder == "" {
				r.ByteOrder = "big"
			}
			if r.WordOrder == "" {
				r.WordOrder = "high_first"
			}
			switch {
			case r.Name == "":
				errs = append(errs, fmt.Errorf("%s.name: missing", rp))
			case !snake(r.Name) || r.Name == "slave":
				errs = append(errs, fmt.Errorf("%s.name: %q is not a snake_case key (a-z, 0-9, _; not \"slave\")", rp, r.Name))
			case names[r.Name]:
				errs = append(errs, fmt.Errorf("%s.name: %q is used twice in this slave", rp, r.Name))
			}
			names[r.Name] = true
			for _, e := range []error{
				oneOf(rp+".table", r.Table, Tables),
				oneOf(rp+".type", r.Type, ValueTypes),
				oneOf(rp+".byte_order", r.ByteOrder, ByteOrders),
				oneOf(rp+".word_order", r.WordOrder, WordOrders),
			} {
				if e != nil {
					errs = append(errs, e)
				}
			}
			if r.Address < 0 || r.Address+r.words()-1 > 65535 {
				errs = append(errs, fmt.Errorf("%s.address: %d is out of range (0 … 65535)", rp, r.Address))
			}
			if r.Scale != nil && (math.IsNaN(*r.Scale) || math.IsInf(*r.Scale, 0)) {
				errs = append(errs, fmt.Errorf("%s.scale: %v is not a finite number", rp, *r.Scale))
			}
			if math.IsNaN(r.Offset) || math.IsInf(r.Offset, 0) {
				errs = append(errs, fmt.Errorf("%s.offset: %v is not a finite number", rp, r.Offset))
			}
			if r.Scale != nil && *r.Scale == 0 {
				errs = append(errs, fmt.Errorf("%s.scale: 0 would report every value as the offset", rp))
			}
		}
	}
	return errors.Join(errs...)
}

func snake(s string) bool {
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}
