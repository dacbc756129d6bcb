package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// A step starts one component of a running gateway. Components are built
// and checked without I/O in Build; a step does the I/O (open files, listen,
// dial, start goroutines) and returns how to stop what it started, or nil
// when there is nothing to stop. Run starts the steps in order and pushes
// each stop onto one list; stopping runs that list backwards, so every
// component stops before the ones it uses. Adding a component is one line
// in (*running).steps.
type step struct {
	name  string
	start func(ctx context.Context) (stop func() error, err error)
	// budget bounds the stop (0: stopBudget). A stop that takes longer is
	// abandoned with an error naming it, so a component that hangs cannot
	// hold the whole shutdown past systemd's TimeoutStopSec.
	budget time.Duration
}

// stopBudget is a step's default stop budget. The whole stop stays below the
// unit's TimeoutStopSec=30 even if every step used all of its budget.
const stopBudget = 3 * time.Second

// lifecycle is the stop list of one Run.
type lifecycle struct {
	log   *slog.Logger
	stops []pushed
	// budget is the default stop budget (0: stopBudget).
	budget time.Duration
	// trace, when set, sees each stop as it ends (tests assert the order).
	trace func(name string, took time.Duration, err error)
}

type pushed struct {
	name   string
	stop   func() error
	budget time.Duration
}

// start runs one step and pushes its stop.
func (l *lifecycle) start(ctx context.Context, s step) error {
	t0 := time.Now()
	stop, err := s.start(ctx)
	if err != nil {
		return err
	}
	l.log.Debug("started", "step", s.name, "took", time.Since(t0).Round(time.Microsecond))
	if stop != nil {
		b := s.budget
		if b <= 0 {
			b = l.budget
		}
		if b <= 0 {
			b = stopBudget
		}
		l.stops = append(l.stops, pushed{name: s.name, stop: stop, budget: b})
	}
	return nil
}

// stop stops everything started, last first, and returns their errors.
func (l *lifecycle) stop() error {
	var errs []error
	for i := len(l.stops) - 1; i >= 0; i-- {
		p := l.stops[i]
		t0 := time.Now()
		err := runBounded(p.stop, p.budget)
		took := time.Since(t0)
		if err != nil {
			errs = append(errs, fmt.Errorf("gateway: stop %s: %w", p.name, err))
		}
		l.log.Debug("stopped", "step", p.name, "took", took.Round(time.Microsecond))
		if l.trace != nil {
			l.trace(p.name, took, err)
		}
	}
	l.stops = nil
	return errors.Join(errs...)
}

// errStopTimeout is a stop that did not finish within its budget.
var errStopTimeout = errors.New("did not finish in time; abandoned so the rest can stop")

// runBounded runs stop, waiting at most budget for it.
func runBounded(stop func() error, budget time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- stop() }()
	t := time.NewTimer(budget)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("%w (after %v)", errStopTimeout, budget)
	}
}
