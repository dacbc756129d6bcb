package modbus

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	mb "github.com/simonvetter/modbus"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
)

// Type is the registered device type.
const Type = "modbus"

func init() {
	devices.Register(devices.Driver{
		Type:    Type,
		Summary: "Modbus RTU master over RS-485: polls registers and coils of each slave, typed, scaled, with units",
		New: func(env devices.Env, decode devices.Decoder) (devices.Device, error) {
			var cfg Config
			if err := decode(&cfg); err != nil {
				return nil, err
			}
			return New(env, cfg)
		},
	})
}

// Counter reasons.
const (
	Timeouts   = "timeouts"   // a slave did not answer within read_timeout
	Exceptions = "exceptions" // exception responses, all codes; also "exception_<code>" per code
	BadCRC     = "bad_crc"    // a response with a wrong CRC-16
	BadFrame   = "bad_frame"  // short, malformed or from another unit id
	BadValue   = "bad_value"  // a float32 that is NaN or infinite
)

// Bus is a Modbus RTU master on one serial port.
type Bus struct {
	cfg    Config
	counts serialport.Counters
	log    *slog.Logger
	state  map[int]string // per slave: "" ok, else the last failure, for logging changes
}

var (
	_ devices.Device  = (*Bus)(nil)
	_ devices.Counter = (*Bus)(nil)
)

// New validates cfg (no I/O).
func New(env devices.Env, cfg Config) (*Bus, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	l := env.Logger
	if l == nil {
		l = slog.Default()
	}
	return &Bus{cfg: cfg, log: l, state: map[int]string{}}, nil
}

// Counters implements devices.Counter.
func (b *Bus) Counters() devices.Stats { return b.counts.Stats() }

// slogWriter sends the library's log lines to slog at Debug.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug(strings.TrimSpace(string(p)), "component", "modbus-lib")
	return len(p), nil
}

func parity(p string) uint {
	switch p {
	case "even":
		return mb.PARITY_EVEN
	case "odd":
		return mb.PARITY_ODD
	}
	return mb.PARITY_NONE
}

// portID identifies the device node behind a path, to notice an unplug (the
// node is gone) or a replug (another node under the same path).
func portID(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Rdev), nil
	}
	return 0, nil
}

// Run implements devices.Device.
func (b *Bus) Run(ctx context.Context, emit func(devices.Reading)) error {
	port := b.cfg.Port
	id0, err := portID(port)
	if err != nil {
		b.counts.Inc("open_failures")
		return fmt.Errorf("modbus on %s: open: %w", port, err)
	}
	client, err := mb.NewClient(&mb.ClientConfiguration{
		URL:      "rtu://" + port,
		Speed:    uint(b.cfg.Baud),
		DataBits: uint(b.cfg.DataBits),
		Parity:   parity(b.cfg.Parity),
		StopBits: uint(b.cfg.StopBits),
		Timeout:  b.cfg.ReadTimeout.D(),
		Logger:   log.New(slogWriter{b.log}, "", 0),
	})
	if err != nil {
		return fmt.Errorf("modbus on %s: %w", port, err)
	}
	if err := client.Open(); err != nil {
		b.counts.Inc("open_failures")
		return fmt.Errorf("modbus on %s: open: %w", port, err)
	}
	defer client.Close()
	b.log.Debug("modbus bus open", "port", port, "slaves", len(b.cfg.Slaves))

	next := make([]time.Time, len(b.cfg.Slaves))
	now := time.Now()
	for i := range next {
		next[i] = now
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		// The slave due first.
		k := 0
		for i := range next {
			if next[i].Before(next[k]) {
				k = i
			}
		}
		timer.Reset(time.Until(next[k]))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		s := b.cfg.Slaves[k]
		next[k] = next[k].Add(s.Interval.D())
		if n := time.Now(); next[k].Before(n) { // overran: do not try to catch up
			next[k] = n.Add(s.Interval.D())
		}
		r, failure, ioErr := b.poll(ctx, client, s)
		if ctx.Err() != nil {
			return nil
		}
		if ioErr != nil {
			return fmt.Errorf("modbus on %s: slave %d: %w (port vanished: unplugged or powered down?)", port, s.ID, ioErr)
		}
		b.report(s.ID, failure)
		if len(r.Fields) > 1 {
			emit(r)
		}
		if failure == Timeouts {
			// A silent bus may be an unplugged adapter: is the node still ours?
			if id, err := portID(port); err != nil || id != id0 {
				if err == nil {
					err = errors.New("another device now sits at this path")
				}
				return fmt.Errorf("modbus on %s: port vanished: %w", port, err)
			}
		}
	}
}

// poll reads every register of one slave. It returns the reading (slave id
// first), the reason of the first failure ("" when all went well), and an
// I/O error when the port itself failed.
func (b *Bus) poll(ctx context.Context, c *mb.ModbusClient, s Slave) (devices.Reading, string, error) {
	r := devices.Reading{Fields: []devices.Field{{Name: "slave", Value: int64(s.ID)}}}
	if err := c.SetUnitId(uint8(s.ID)); err != nil {
		return r, "", err
	}
	failure := ""
	for _, reg := range s.Registers {
		if ctx.Err() != nil {
			return r, failure, nil
		}
		v, err := read(c, reg)
		if err == nil {
			r.Fields = append(r.Fields, devices.Field{Name: reg.Name, Value: v, Unit: reg.Unit})
			continue
		}
		reason, detail := classify(err)
		if reason == "" {
			return r, failure, err
		}
		b.counts.Inc(reason)
		if detail != "" {
			b.counts.Inc(detail)
		}
		b.log.Debug("modbus read failed", "slave", s.ID, "register", reg.Name, "address", reg.Address, "err", err)
		if failure == "" {
			failure = reason
		}
		if reason == Timeouts {
			break // a silent slave: do not wait out every register
		}
	}
	return r, failure, nil
}

func read(c *mb.ModbusClient, reg Register) (any, error) {
	switch reg.Table {
	case "coil":
		return c.ReadCoil(uint16(reg.Address))
	case "discrete":
		return c.ReadDiscreteInput(uint16(reg.Address))
	}
	t := mb.HOLDING_REGISTER
	if reg.Table == "input" {
		t = mb.INPUT_REGISTER
	}
	raw, err := c.ReadRawBytes(uint16(reg.Address), uint16(2*reg.words()), t)
	if err != nil {
		return nil, err
	}
	v, err := Decode(reg, raw)
	if err != nil {
		return nil, valueError{err}
	}
	return v, nil
}

type valueError struct{ error }

// exceptionNames are the counter names of the exception codes (Modbus
// Application Protocol v1.1b3 §7).
var exceptionNames = map[error]string{
	mb.ErrIllegalFunction:         "exception_illegal_function",
	mb.ErrIllegalDataAddress:      "exception_illegal_data_address",
	mb.ErrIllegalDataValue:        "exception_illegal_data_value",
	mb.ErrServerDeviceFailure:     "exception_server_device_failure",
	mb.ErrAcknowledge:             "exception_acknowledge",
	mb.ErrServerDeviceBusy:        "exception_server_device_busy",
	mb.ErrMemoryParityError:       "exception_memory_parity_error",
	mb.ErrGWPathUnavailable:       "exception_gateway_path_unavailable",
	mb.ErrGWTargetFailedToRespond: "exception_gateway_target_failed_to_respond",
}

// classify maps a library error to a counter reason (and a per-code detail
// for exceptions); "" means an I/O error of the port itself.
func classify(err error) (reason, detail string) {
	var ve valueError
	if errors.As(err, &ve) {
		return BadValue, ""
	}
	if name, ok := exceptionNames[err]; ok {
		return Exceptions, name
	}
	switch {
	case errors.Is(err, mb.ErrRequestTimedOut):
		return Timeouts, ""
	case errors.Is(err, mb.ErrBadCRC):
		return BadCRC, ""
	case errors.Is(err, mb.ErrShortFrame), errors.Is(err, mb.ErrProtocolError), errors.Is(err, mb.ErrBadUnitId),
		errors.Is(err, mb.ErrUnexpectedParameters):
		return BadFrame, ""
	case strings.HasPrefix(err.Error(), "unknown exception code"):
		return Exceptions, "exception_other"
	}
	return "", ""
}

// report logs a slave's change of state: once when it starts failing (and
// why), once when it recovers.
func (b *Bus) report(id int, failure string) {
	prev := b.state[id]
	if prev == failure {
		return
	}
	b.state[id] = failure
	switch {
	case failure == "":
		b.log.Info("modbus slave answering again", "slave", id)
	default:
		b.log.Warn("modbus slave failing", "slave", id, "reason", failure, "port", b.cfg.Port)
	}
}
