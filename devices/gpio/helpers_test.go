package gpio

import (
	"context"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/jonboulle/clockwork"
	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/gpio/gpiofake"
)

// line is a fake GPIO line and the fake clock its driver runs on.
type line struct {
	*gpiofake.Pin
	clock *clockwork.FakeClock
}

// fakePin registers a fake line on a fresh fake clock; it is removed when
// the test ends.
func fakePin(t *testing.T) *line {
	t.Helper()
	c := clockwork.NewFakeClock()
	return &line{Pin: gpiofake.New(t, c), clock: c}
}

// build builds a driver for this line, on its fake clock.
func (l *line) build(t *testing.T, typ, src string) devices.Device {
	t.Helper()
	return buildEnv(t, typ, src, devices.Env{Name: "t", Clock: l.clock})
}

// waiting returns once n timers are pending on the line's clock (the driver
// is blocked until one fires), failing the test after 5 s of real time.
func (l *line) waiting(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := l.clock.BlockUntilContext(ctx, n); err != nil {
		t.Fatalf("the driver did not wait on the clock within 5s: %v", err)
	}
}

// tomlDecoder decodes a [[device]] table body the way the gateway does.
func tomlDecoder(src string) devices.Decoder {
	return func(v any) error {
		_, err := toml.Decode(src, v)
		return err
	}
}

func build(t *testing.T, typ, src string) devices.Device {
	t.Helper()
	return buildEnv(t, typ, src, devices.Env{Name: "t"})
}

func buildEnv(t *testing.T, typ, src string, env devices.Env) devices.Device {
	t.Helper()
	d, ok := devices.Lookup(typ)
	if !ok {
		t.Fatalf("driver %s not registered", typ)
	}
	dev, err := d.New(env, tomlDecoder(src))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return dev
}

// runner runs a device and collects its readings.
type runner struct {
	readings chan devices.Reading
	done     chan error
	cancel   context.CancelFunc
}

// start runs dev; stopping it wakes the given lines' waits (on a fake clock
// the driver's poll timeout would never come).
func start(t *testing.T, dev devices.Device, lines ...*line) *runner {
	t.Helper()
	ctx, cancelCtx := context.WithCancel(context.Background())
	cancel := func() {
		cancelCtx()
		for _, l := range lines {
			l.Wake()
		}
	}
	r := &runner{readings: make(chan devices.Reading, 256), done: make(chan error, 1), cancel: cancel}
	go func() { r.done <- dev.Run(ctx, func(rd devices.Reading) { r.readings <- rd }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

func (r *runner) next(t *testing.T) devices.Reading {
	t.Helper()
	select {
	case rd := <-r.readings:
		return rd
	case err := <-r.done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no reading within 5s")
	}
	return devices.Reading{}
}

// stop cancels Run and returns its result.
func (r *runner) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // let the cleanup see it too
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancel")
	}
	return nil
}

func field(rd devices.Reading, name string) any {
	for _, f := range rd.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return nil
}

// feed plays levels into the fake line as edges, spacing apart on the fake
// clock: each edge is handled by the driver before the clock moves on.
func feed(t *testing.T, p *line, spacing time.Duration, levels ...pgpio.Level) {
	t.Helper()
	for _, l := range levels {
		p.Edge(t, l)
		p.clock.Advance(spacing)
	}
}

func level(p *line) pgpio.Level { return p.Level() }
