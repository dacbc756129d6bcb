package wiegand

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jonboulle/clockwork"
	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/host/v3/gpioioctl"
)

// orderedLines is D0 and D1 requested together from one gpiochip.
type orderedLines struct {
	set        *gpioioctl.LineSet
	off0, off1 int // line offsets on the chip
}

// lineSet requests D0 and D1 as one line set when both are character-device
// lines of the same chip; it returns nil, nil when they are not (sysfs lines,
// fakes, different chips).
func lineSet(p0, p1 pgpio.PinIO, pull pgpio.Pull) (*orderedLines, error) {
	l0, ok0 := realPin(p0).(*gpioioctl.GPIOLine)
	l1, ok1 := realPin(p1).(*gpioioctl.GPIOLine)
	if !ok0 || !ok1 {
		return nil, nil
	}
	for _, chip := range gpioioctl.Chips {
		if chip.ByName(l0.Name()) != l0 || chip.ByName(l1.Name()) != l1 {
			continue
		}
		set, err := chip.LineSet(gpioioctl.LineInput, pgpio.FallingEdge, pull, l0.Name(), l1.Name())
		if err != nil {
			return nil, fmt.Errorf("wiegand: request %s and %s on %s: %w", l0.Name(), l1.Name(), chip.Name(), err)
		}
		return &orderedLines{set: set, off0: l0.Number(), off1: l1.Number()}, nil
	}
	return nil, nil
}

func realPin(p pgpio.PinIO) pgpio.PinIO {
	for {
		r, ok := p.(pgpio.RealPin)
		if !ok {
			return p
		}
		p = r.Real()
	}
}

// watch turns the line set's edge events into bits until ctx ends.
func (o *orderedLines) watch(ctx context.Context, clock clockwork.Clock, out chan<- bit) {
	for ctx.Err() == nil {
		n, edge, err := o.set.WaitForEdge(pollEvery)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				// A read error other than the poll timeout: back off briefly
				// rather than spin; the next poll tries again.
				select {
				case <-ctx.Done():
				case <-time.After(pollEvery):
				}
			}
			continue
		}
		if edge != pgpio.FallingEdge {
			continue
		}
		var v uint8
		switch n {
		case o.off0:
		case o.off1:
			v = 1
		default:
			continue
		}
		select {
		case out <- bit{v: v, t: clock.Now()}:
		case <-ctx.Done():
			return
		}
	}
}
