// Package wiegand reads Wiegand access-control readers (26- and 34-bit
// frames) on two GPIO inputs, D0 and D1.
//
// Both lines idle high; the reader sends a 0 as a short low pulse (about
// 50 µs) on D0 and a 1 as one on D1, a bit every 1–2 ms. The driver takes
// falling edges from both lines, ends a frame when no bit has come for
// frame_gap (25 ms by default), checks the parity and publishes the facility
// code and card number. Readers drive 5 V: wire D0/D1 through a level
// shifter or divider to the 3.3 V GPIO.
package wiegand

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/gpio"
	"github.com/edgegw/edgegw/internal/duration"
)

func init() {
	devices.Register(devices.Driver{
		Type:    "wiegand",
		Summary: "Wiegand 26/34-bit card reader on two GPIO lines (D0/D1): facility code, card number, parity checked",
		New:     New,
	})
}

// Config is the wiegand part of a [[device]] table.
type Config struct {
	D0 string `toml:"d0"` // the DATA0 line: header position or line name
	D1 string `toml:"d1"` // the DATA1 line
	// Pull is "up" (default: the lines are open collector on many readers),
	// "down" or "none".
	Pull string `toml:"pull"`
	// FrameGap ends a frame when no bit has arrived for this long
	// (default 25ms; bits come 1–2 ms apart).
	FrameGap duration.Duration `toml:"frame_gap"`
	// Dedupe suppresses the same card within this window (default 0: off).
	Dedupe duration.Duration `toml:"dedupe"`
}

// maxBits bounds a frame; longer bursts are noise and dropped whole.
const maxBits = 64

// pollEvery bounds how long a line watcher waits before it looks at the
// context again.
const pollEvery = 100 * time.Millisecond

// Reader is a wiegand device. Bit stamps, the frame gap and dedupe use
// devices.Env.Clock.
type Reader struct {
	d0, d1 string
	pull   pgpio.Pull
	gap    time.Duration
	dedupe devices.Deduper
	clock  clockwork.Clock // bit stamps and the frame gap

	frames, badLength, badParity, dups, overflow atomic.Uint64
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
	d0, err := gpio.ResolvePin("d0", env.Board, c.D0)
	if err != nil {
		return nil, err
	}
	d1, err := gpio.ResolvePin("d1", env.Board, c.D1)
	if err != nil {
		return nil, err
	}
	if d0 == d1 {
		return nil, fmt.Errorf("d1: %q is the same line as d0; D0 and D1 need two GPIOs", c.D1)
	}
	pull, err := gpio.ParsePull("pull", c.Pull, pgpio.PullUp)
	if err != nil {
		return nil, err
	}
	r := &Reader{d0: d0, d1: d1, pull: pull, gap: 25 * time.Millisecond, clock: env.ClockOrReal()}
	r.dedupe.Now = r.clock.Now
	if fg := c.FrameGap.D(); fg != 0 {
		if fg < 5*time.Millisecond || fg > time.Second {
			return nil, fmt.Errorf("frame_gap: %s is out of range; use 5ms to 1s (bits come 1–2 ms apart)", fg)
		}
		r.gap = fg
	}
	r.dedupe.Window = c.Dedupe.D() // never negative: duration.Parse refuses it
	return r, nil
}

// Counters implements devices.Counter.
func (r *Reader) Counters() devices.Stats {
	return devices.Stats{
		"frames":                r.frames.Load(),
		"bad_length":            r.badLength.Load(),
		"bad_parity":            r.badParity.Load(),
		"duplicates_suppressed": r.dups.Load(),
		"overflow":              r.overflow.Load(),
	}
}

type bit struct {
	v uint8
	t time.Time
}

// Run watches D0 and D1 and publishes each valid card.
func (r *Reader) Run(ctx context.Context, emit func(devices.Reading)) error {
	p0, err := gpio.OpenPin("d0", r.d0)
	if err != nil {
		return err
	}
	p1, err := gpio.OpenPin("d1", r.d1)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	bits := make(chan bit, 2*maxBits)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	// On the GPIO character device both lines go into one request, so the
	// kernel queues their edges in one stream, in order, however late this
	// process is scheduled. Elsewhere (sysfs, test fakes) each line has its
	// own watcher and bits are ordered by when the watchers woke.
	ls, err := lineSet(p0, p1, r.pull)
	if err != nil {
		return err
	}
	if ls != nil {
		defer ls.set.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			ls.watch(ctx, r.clock, bits)
		}()
	} else {
		for _, p := range []pgpio.PinIO{p0, p1} {
			if err := p.In(r.pull, pgpio.FallingEdge); err != nil {
				return fmt.Errorf("wiegand: configure %s as input: %w", p.Name(), err)
			}
			defer p.In(r.pull, pgpio.NoEdge)
		}
		for v, p := range []pgpio.PinIO{p0, p1} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				watch(ctx, p, uint8(v), r.clock, bits)
			}()
		}
	}

	var (
		frame []bit
		over  bool
		gap   = r.clock.NewTimer(time.Hour)
	)
	gap.Stop()
	defer gap.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-bits:
			if len(frame) < maxBits {
				frame = append(frame, b)
			} else {
				over = true
			}
			// The gap counts from when the bit was seen, not from when this
			// loop got to it, so a late loop does not stretch a frame.
			gap.Reset(r.gap - r.clock.Since(b.t))
		case <-gap.Chan():
			if n := len(bits); n > 0 {
				// Bits were waiting: the gap was this loop being late, not
				// the line being idle. Take them and time the gap again.
				var last bit
				for i := 0; i < n; i++ {
					last = <-bits
					if len(frame) < maxBits {
						frame = append(frame, last)
					} else {
						over = true
					}
				}
				gap.Reset(r.gap - r.clock.Since(last.t))
				continue
			}
			if over {
				r.overflow.Add(1)
				r.badLength.Add(1)
			} else {
				r.finish(frame, emit)
			}
			frame, over = frame[:0], false
		}
	}
}

// watch turns falling edges on one line into bits until ctx ends.
func watch(ctx context.Context, p pgpio.PinIn, v uint8, clock clockwork.Clock, out chan<- bit) {
	for ctx.Err() == nil {
		if !p.WaitForEdge(pollEvery) {
			continue
		}
		select {
		case out <- bit{v: v, t: clock.Now()}:
		case <-ctx.Done():
			return
		}
	}
}

func (r *Reader) finish(frame []bit, emit func(devices.Reading)) {
	// The two watchers stamp bits as they wake; order by those stamps, not
	// by which goroutine got to the channel first.
	sort.SliceStable(frame, func(i, j int) bool { return frame[i].t.Before(frame[j].t) })
	vals := make([]uint8, len(frame))
	for i, b := range frame {
		vals[i] = b.v
	}
	c, err := Decode(vals)
	switch {
	case errors.Is(err, ErrLength):
		r.badLength.Add(1)
		return
	case err != nil:
		r.badParity.Add(1)
		return
	}
	r.frames.Add(1)
	if r.dedupe.Seen(c.UID) {
		r.dups.Add(1)
		return
	}
	emit(devices.Reading{
		Time: frame[0].t,
		UID:  c.UID,
		Fields: []devices.Field{
			{Name: "facility", Value: int64(c.Facility)},
			{Name: "card", Value: int64(c.Number)},
			{Name: "bits", Value: int64(c.Bits)},
		},
	})
}
