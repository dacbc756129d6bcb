package gpio

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/internal/duration"
)

func init() {
	devices.Register(devices.Driver{
		Type:    "gpio_in",
		Summary: "digital input (door contact, PIR, button): debounced state changes, optional periodic state",
		New:     newInput,
	})
}

// InConfig is the gpio_in part of a [[device]] table.
type InConfig struct {
	// Pin is a header position ("P1_11") or line name ("GPIO17").
	Pin string `toml:"pin"`
	// Pull is "up" (default), "down" or "none".
	Pull string `toml:"pull"`
	// Edge selects which transitions are published: "both" (default),
	// "rising" (low → high) or "falling" (high → low).
	Edge string `toml:"edge"`
	// Debounce is how long a new level must hold before it counts
	// (default 20ms; "0s" disables).
	Debounce *duration.Duration `toml:"debounce"`
	// Interval, when set, also publishes the current state periodically.
	Interval duration.Duration `toml:"interval"`
	// ActiveLow makes `state` true while the line is low (a contact to
	// ground with a pull-up).
	ActiveLow bool `toml:"active_low"`
}

// Input is a gpio_in device. It reads time (stamps, debounce, interval)
// from devices.Env.Clock, so tests step it on a fake clock.
type Input struct {
	name      string
	line      string
	pull      pgpio.Pull
	rising    bool // publish low → high
	falling   bool // publish high → low
	debounce  time.Duration
	interval  time.Duration
	activeLow bool
	clock     clockwork.Clock

	edges, bounces, changes, filtered atomic.Uint64
}

var (
	_ devices.Device  = (*Input)(nil)
	_ devices.Counter = (*Input)(nil)
)

// pollEvery bounds how long Run waits for an edge before it looks at its
// context again.
const pollEvery = 100 * time.Millisecond

func newInput(env devices.Env, decode devices.Decoder) (devices.Device, error) {
	var c InConfig
	if err := decode(&c); err != nil {
		return nil, err
	}
	line, err := ResolvePin("pin", env.Board, c.Pin)
	if err != nil {
		return nil, err
	}
	pull, err := ParsePull("pull", c.Pull, pgpio.PullUp)
	if err != nil {
		return nil, err
	}
	in := &Input{name: env.Name, line: line, pull: pull, interval: c.Interval.D(), activeLow: c.ActiveLow, debounce: 20 * time.Millisecond, clock: env.ClockOrReal()}
	switch strings.ToLower(c.Edge) {
	case "", "both":
		in.rising, in.falling = true, true
	case "rising":
		in.rising = true
	case "falling":
		in.falling = true
	default:
		return nil, fmt.Errorf("edge: %q is not an edge; use \"rising\", \"falling\" or \"both\"", c.Edge)
	}
	if c.Debounce != nil {
		if db := c.Debounce.D(); db < 0 || db > 10*time.Second {
			return nil, fmt.Errorf("debounce: %s is out of range; use 0s (off) to 10s", db)
		}
		in.debounce = c.Debounce.D()
	}
	if iv := c.Interval.D(); iv != 0 && iv < 100*time.Millisecond {
		return nil, fmt.Errorf("interval: %s is too short; use at least 100ms, or leave it out for changes only", iv)
	}
	return in, nil
}

// Counters implements devices.Counter: edges seen, bounces (edges whose level
// did not hold for the debounce time), changes (debounced transitions) and
// filtered (changes not published because of `edge`).
func (in *Input) Counters() devices.Stats {
	return devices.Stats{
		"edges":    in.edges.Load(),
		"bounces":  in.bounces.Load(),
		"changes":  in.changes.Load(),
		"filtered": in.filtered.Load(),
	}
}

// Run opens the pin, publishes its state at start, then each debounced
// change the edge filter lets through, and the state every interval if set.
func (in *Input) Run(ctx context.Context, emit func(devices.Reading)) error {
	pin, err := OpenPin("pin", in.line)
	if err != nil {
		return err
	}
	if err := pin.In(in.pull, pgpio.BothEdges); err != nil {
		return fmt.Errorf("gpio_in: configure %s as input: %w", in.line, err)
	}
	defer pin.In(in.pull, pgpio.NoEdge) // stop edge detection; the line stays an input

	state := pin.Read()
	emit(in.reading(in.clock.Now(), state, ""))

	var (
		pending   bool      // an edge was seen and its level is being held
		firstEdge time.Time // when the pending change started
		settle    time.Time // when the pending level has held long enough
		nextTick  time.Time
	)
	if in.interval > 0 {
		nextTick = in.clock.Now().Add(in.interval)
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		wait := pollEvery
		now := in.clock.Now()
		if pending {
			wait = min(wait, max(settle.Sub(now), 0))
		}
		if in.interval > 0 {
			wait = min(wait, max(nextTick.Sub(now), 0))
		}
		// Never WaitForEdge(0): the character device reads 0 as "forever".
		if wait > 0 && pin.WaitForEdge(wait) {
			in.edges.Add(1)
			now = in.clock.Now()
			if !pending {
				pending, firstEdge = true, now
			}
			settle = now.Add(in.debounce)
			if in.debounce > 0 {
				continue
			}
		}
		now = in.clock.Now()
		if pending && !now.Before(settle) {
			pending = false
			lvl := pin.Read()
			if lvl == state {
				in.bounces.Add(1) // it came back: a bounce or a glitch
			} else {
				state = lvl
				in.changes.Add(1)
				if (bool(lvl) && in.rising) || (!bool(lvl) && in.falling) {
					edge := "falling"
					if lvl {
						edge = "rising"
					}
					emit(in.reading(firstEdge, lvl, edge))
				} else {
					in.filtered.Add(1)
				}
			}
		}
		if in.interval > 0 && !now.Before(nextTick) {
			emit(in.reading(now, state, ""))
			for !nextTick.After(now) {
				nextTick = nextTick.Add(in.interval)
			}
		}
	}
}

func (in *Input) reading(t time.Time, l pgpio.Level, edge string) devices.Reading {
	active := bool(l) != in.activeLow
	f := []devices.Field{
		{Name: "state", Value: active},
		{Name: "level", Value: levelName(l)},
	}
	if edge != "" {
		f = append(f, devices.Field{Name: "edge", Value: edge})
	}
	return devices.Reading{Time: t, Fields: f}
}
