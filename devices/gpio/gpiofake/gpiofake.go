// Package gpiofake is a GPIO line for driver tests that run on a fake clock.
// It wraps periph's gpiotest.Pin (edges are fed through EdgesChan) and adds
// what a test needs to step time without depending on the scheduler: its
// WaitForEdge times out on the given clock, and it tells the test when the
// driver has finished with an edge (it is waiting for the next one again).
package gpiofake

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// Pin is a fake GPIO line registered in gpioreg under a fresh name.
type Pin struct {
	*gpiotest.Pin
	clock clockwork.Clock

	done      chan struct{} // one value per edge the driver is done with
	wake      chan struct{} // ends one wait early, as a timeout would
	armed     chan struct{} // closed once the driver asked for edges
	armOnce   sync.Once
	afterEdge bool // touched only by the goroutine in WaitForEdge
}

var seq atomic.Int64

// New registers a fake line whose WaitForEdge times out on clock (a
// clockwork fake, or the real clock), and unregisters it when the test ends.
func New(t testing.TB, clock clockwork.Clock) *Pin {
	t.Helper()
	n := seq.Add(1)
	p := &Pin{
		Pin:   &gpiotest.Pin{N: fmt.Sprintf("FAKE_GPIO_%d", n), Num: int(5000 + n), EdgesChan: make(chan pgpio.Level)},
		clock: clock,
		done:  make(chan struct{}, 1),
		wake:  make(chan struct{}, 1),
		armed: make(chan struct{}),
	}
	if err := gpioreg.Register(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gpioreg.Unregister(p.N) })
	return p
}

// In implements gpio.PinIn. gpiotest's In drops an edge being fed at that
// moment (it flushes old edges), so Edge waits until the driver has asked
// for edges.
func (p *Pin) In(pull pgpio.Pull, edge pgpio.Edge) error {
	err := p.Pin.In(pull, edge)
	if err == nil && edge != pgpio.NoEdge {
		p.armOnce.Do(func() { close(p.armed) })
	}
	return err
}

// WaitForEdge implements gpio.PinIn: it returns true with the line set to
// the level fed on EdgesChan, or false once timeout has passed on the clock.
// Entering it after an edge tells Edge the driver is done with that edge.
func (p *Pin) WaitForEdge(timeout time.Duration) bool {
	expired := p.clock.After(timeout) // registered before the driver is reported waiting
	if p.afterEdge {
		p.afterEdge = false
		p.done <- struct{}{}
	}
	select {
	case <-expired:
		return false
	case <-p.wake:
		return false
	case l := <-p.EdgesChan:
		_ = p.Out(l)
		p.afterEdge = true
		return true
	}
}

// Edge feeds one edge to level l and returns once the driver has handled it
// and waits on the line again (its timeout already on the clock), failing
// the test after 5 s of real time.
func (p *Pin) Edge(t testing.TB, l pgpio.Level) {
	t.Helper()
	limit := time.NewTimer(5 * time.Second)
	defer limit.Stop()
	select {
	case <-p.armed:
	case <-limit.C:
		t.Fatalf("%s: the driver did not configure the line for edges within 5s", p.N)
	}
	select {
	case p.EdgesChan <- l:
	case <-limit.C:
		t.Fatalf("%s: the driver did not take edge %v within 5s", p.N, l)
	}
	select {
	case <-p.done:
	case <-limit.C:
		t.Fatalf("%s: the driver did not come back for the next edge within 5s of edge %v", p.N, l)
	}
}

// Wake ends the driver's current (or next) wait for an edge as a timeout
// would, so a driver that looks at its context between waits sees it
// cancelled without the test moving the clock.
func (p *Pin) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Level is the line's current level.
func (p *Pin) Level() pgpio.Level {
	p.Lock()
	defer p.Unlock()
	return p.L
}
