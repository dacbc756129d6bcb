package gpio

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/internal/duration"
)

func init() {
	devices.Register(devices.Driver{
		Type:    "gpio_out",
		Summary: "digital output (relay, door strike, LED): on/off/toggle/pulse commands, state published back, safe state on start and stop",
		New:     newOutput,
	})
}

// OutConfig is the gpio_out part of a [[device]] table.
type OutConfig struct {
	// Pin is a header position ("P1_11") or line name ("GPIO17").
	Pin string `toml:"pin"`
	// ActiveLow drives the line low for "on" (most relay boards).
	ActiveLow bool `toml:"active_low"`
	// Initial is the state set when the device starts: "off" (default) or "on".
	Initial string `toml:"initial"`
	// SafeState is the state set when the device stops (shutdown, failure):
	// "off" or "on"; default: the same as Initial.
	SafeState string `toml:"safe_state"`
	// MaxPulse caps pulse commands (default 1m).
	MaxPulse duration.Duration `toml:"max_pulse"`
}

// ErrNotRunning is returned by Command when the output is not running (not
// yet started, or between restarts).
var ErrNotRunning = errors.New("gpio_out: not running; command dropped")

// Output is a gpio_out device. Pulses and reading times use
// devices.Env.Clock.
type Output struct {
	name      string
	line      string
	activeLow bool
	initial   bool
	safe      bool
	maxPulse  time.Duration
	clock     clockwork.Clock // pulses and reading times

	mu  sync.Mutex
	cur *session // non-nil while Run is running

	commands, rejected atomic.Uint64
}

// session is one Run's door for commands; gone is closed when Run stops
// taking them.
type session struct {
	reqs chan request
	gone chan struct{}
}

type request struct {
	cmd  Command
	done chan error
}

var (
	_ devices.Device    = (*Output)(nil)
	_ devices.Commander = (*Output)(nil)
	_ devices.Counter   = (*Output)(nil)
)

func newOutput(env devices.Env, decode devices.Decoder) (devices.Device, error) {
	var c OutConfig
	if err := decode(&c); err != nil {
		return nil, err
	}
	line, err := ResolvePin("pin", env.Board, c.Pin)
	if err != nil {
		return nil, err
	}
	o := &Output{name: env.Name, line: line, activeLow: c.ActiveLow, maxPulse: time.Minute, clock: env.ClockOrReal()}
	if o.initial, err = parseOnOff("initial", c.Initial, false); err != nil {
		return nil, err
	}
	if o.safe, err = parseOnOff("safe_state", c.SafeState, o.initial); err != nil {
		return nil, err
	}
	if mp := c.MaxPulse.D(); mp != 0 {
		if mp < 0 || mp > 24*time.Hour {
			return nil, fmt.Errorf("max_pulse: %s is out of range; use up to 24h", mp)
		}
		o.maxPulse = mp
	}
	return o, nil
}

func parseOnOff(key, s string, def bool) (bool, error) {
	switch strings.ToLower(s) {
	case "":
		return def, nil
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("%s: %q is not a state; use \"on\" or \"off\"", key, s)
}

// Counters implements devices.Counter: commands applied and rejected.
func (o *Output) Counters() devices.Stats {
	return devices.Stats{"commands": o.commands.Load(), "commands_rejected": o.rejected.Load()}
}

// Command implements devices.Commander. It decodes the payload (see
// ParseCommand), hands it to Run and waits until the line is driven; the new
// state is emitted as a Reading. A bad payload is an error naming what was
// wrong, and counted.
func (o *Output) Command(ctx context.Context, payload []byte) error {
	cmd, err := ParseCommand(payload, o.maxPulse)
	if err != nil {
		o.rejected.Add(1)
		return fmt.Errorf("gpio_out %s: %w", o.name, err)
	}
	o.mu.Lock()
	s := o.cur
	o.mu.Unlock()
	if s == nil {
		o.rejected.Add(1)
		return ErrNotRunning
	}
	r := request{cmd: cmd, done: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-s.gone:
		o.rejected.Add(1)
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run drives the line to the initial state, applies commands until ctx is
// cancelled, then drives it to the safe state. Each state it sets is emitted.
func (o *Output) Run(ctx context.Context, emit func(devices.Reading)) error {
	pin, err := OpenPin("pin", o.line)
	if err != nil {
		return err
	}
	on := o.initial
	if err := pin.Out(o.level(on)); err != nil {
		return fmt.Errorf("gpio_out: drive %s: %w", o.line, err)
	}
	emit(o.reading(on, "start", 0))

	s := &session{reqs: make(chan request), gone: make(chan struct{})}
	o.mu.Lock()
	o.cur = s
	o.mu.Unlock()

	var (
		pulse    clockwork.Timer
		pulseEnd <-chan time.Time
	)
	stop := func() error {
		o.mu.Lock()
		o.cur = nil
		o.mu.Unlock()
		close(s.gone) // a Command waiting to hand over gets ErrNotRunning
		if pulse != nil {
			pulse.Stop()
		}
		if err := pin.Out(o.level(o.safe)); err != nil {
			return fmt.Errorf("gpio_out: drive %s to its safe state: %w", o.line, err)
		}
		emit(o.reading(o.safe, "stop", 0))
		return nil
	}

	for {
		select {
		case <-ctx.Done():
			return stop()
		case <-pulseEnd:
			pulseEnd, pulse = nil, nil
			on = !on
			if err := pin.Out(o.level(on)); err != nil {
				serr := stop()
				return errors.Join(fmt.Errorf("gpio_out: drive %s: %w", o.line, err), serr)
			}
			emit(o.reading(on, "pulse_end", 0))
		case r := <-s.reqs:
			if pulse != nil { // a new command ends a pulse in progress
				pulse.Stop()
				pulse, pulseEnd = nil, nil
			}
			next := r.cmd.On
			if r.cmd.Toggle {
				next = !on
			}
			if err := pin.Out(o.level(next)); err != nil {
				err = fmt.Errorf("gpio_out: drive %s: %w", o.line, err)
				r.done <- err
				return errors.Join(err, stop())
			}
			on = next
			o.commands.Add(1)
			if r.cmd.Pulse > 0 {
				pulse = o.clock.NewTimer(r.cmd.Pulse)
				pulseEnd = pulse.Chan()
			}
			emit(o.reading(on, "command", r.cmd.Pulse))
			r.done <- nil
		}
	}
}

func (o *Output) level(on bool) pgpio.Level {
	return pgpio.Level(on != o.activeLow)
}

func (o *Output) reading(on bool, cause string, pulse time.Duration) devices.Reading {
	f := []devices.Field{
		{Name: "state", Value: on},
		{Name: "level", Value: levelName(o.level(on))},
		{Name: "cause", Value: cause},
	}
	if pulse > 0 {
		f = append(f, devices.Field{Name: "pulse_ms", Value: pulse.Milliseconds(), Unit: "ms"})
	}
	return devices.Reading{Time: o.clock.Now(), Fields: f}
}
