// Package devices holds the contract between edgegw and its device drivers:
// the Device interface, the Reading a driver emits, and the registry that maps
// a configured `type` to a driver constructor.
//
// A driver never knows about MQTT. It is handed its configuration, opens its
// port or bus when Run starts, emits Readings, and returns when the context is
// cancelled. The gateway stamps each Reading with a sequence number and time,
// encodes it and publishes it.
//
// Concurrency. A constructor does no I/O and starts no goroutine. Run owns
// every goroutine it starts and waits for them before it returns; it must
// return soon after ctx is cancelled, because stopping the gateway waits
// for it: a read that can block for ever is unblocked by closing the port
// or bus from a watcher (serialport.ReadAll does this). emit may be called
// from any of Run's goroutines, never after Run has returned; one device's
// calls are serialised, since the gateway numbers its readings in order.
// emit is usually quick but may block: under the buffer's full_policy
// "block" it waits for space, and with an external local broker for up to
// that client's publish timeout. So a driver does not call emit while
// holding a lock that Command or Counters need, and a goroutine that must
// keep pace with the hardware (Wiegand's edge watchers) hands its data to
// Run's loop through a buffered channel rather than calling emit itself. A
// serial reader may call emit directly: the kernel keeps a UART's input
// (4 KiB) while it waits. Command runs on a goroutine of the gateway's, one command at a
// time per device and concurrently with Run; it may wait until the command
// is applied, and returns when its ctx is cancelled. Counters may be called
// at any time from any goroutine (metrics, `edgegw status`) and returns at
// once: atomic counters, no I/O, no lock Run holds while it blocks.
package devices

import (
	"context"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
)

// Device is one configured device: a reader, a sensor or an actuator.
type Device interface {
	// Run reads the device until ctx is cancelled and calls emit for each
	// reading. It returns nil when ctx is cancelled. Any other return is a
	// failure (port vanished, bus error): the gateway logs it, counts it and
	// calls Run again after a backoff, so a driver need not loop on open
	// errors itself. emit is safe to call from any goroutine Run starts, as
	// long as Run waits for them before returning; it may block (see the
	// package doc).
	Run(ctx context.Context, emit func(Reading)) error
}

// Field is one measured value of a Reading.
type Field struct {
	Name  string // snake_case key in the payload's "values" object, e.g. "pm2_5"
	Value any    // float64, int64, bool or string
	Unit  string // e.g. "°C", "hPa", "µg/m³"; empty for unitless values
}

// Reading is one observation a device reports.
type Reading struct {
	// Time is when the observation was made. Zero means "now": the gateway
	// stamps it when it receives the Reading.
	Time time.Time
	// UID is set for an identity read (RFID tag, Wiegand card): the tag's hex
	// digits in upper case, as the reader reports them.
	UID string
	// Fields are the measured values, in the order the driver reports them.
	Fields []Field
}

// Stats is what a driver counts. Drivers that count bad frames or other
// trouble implement Counter; the gateway exposes the numbers in metrics and
// in `edgegw status`.
type Stats map[string]uint64

// Counter is implemented by devices that count events by reason, e.g.
// "bad_checksum", "bad_frame", "duplicates_suppressed", "reopens".
type Counter interface {
	Counters() Stats
}

// Commander is implemented by devices that accept commands (outputs such as
// relays). The gateway subscribes the device's command topic on the local
// broker and hands each command payload to Command; the reply (the new state)
// is published as an ordinary Reading through emit.
type Commander interface {
	Command(ctx context.Context, payload []byte) error
}

// Env is what the gateway hands a driver constructor besides its own config.
type Env struct {
	// Name is the device's configured name.
	Name string
	// Logger is tagged with component=device and device=<name>.
	Logger *slog.Logger
	// Board is the name of the board profile in use ("" when unknown).
	Board string
	// Clock, when set, is the driver's time source for timestamps, timers
	// and debouncing (tests pass a fake one); nil means the real clock.
	// Drivers that take it say so.
	Clock clockwork.Clock
}

// ClockOrReal is e.Clock, or the real clock when none was given.
func (e Env) ClockOrReal() clockwork.Clock {
	if e.Clock == nil {
		return clockwork.NewRealClock()
	}
	return e.Clock
}
