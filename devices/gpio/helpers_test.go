package gpio

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/edgegw/edgegw/devices"
)

var pinSeq atomic.Int64

// fakePin registers a periph fake pin under a fresh name and removes it when
// the test ends.
func fakePin(t *testing.T) *gpiotest.Pin {
	t.Helper()
	n := pinSeq.Add(1)
	p := &gpiotest.Pin{N: fmt.Sprintf("TEST_GPIO_%d", n), Num: int(1000 + n), EdgesChan: make(chan pgpio.Level)}
	if err := gpioreg.Register(p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gpioreg.Unregister(p.N) })
	return p
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
	d, ok := devices.Lookup(typ)
	if !ok {
		t.Fatalf("driver %s not registered", typ)
	}
	dev, err := d.New(devices.Env{Name: "t"}, tomlDecoder(src))
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

func start(t *testing.T, dev devices.Device) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
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

// feed plays levels into the fake pin as edges, spaced like the real signal.
func feed(t *testing.T, p *gpiotest.Pin, spacing time.Duration, levels ...pgpio.Level) {
	t.Helper()
	next := time.Now()
	for _, l := range levels {
		time.Sleep(time.Until(next)) // the signal's own timing, not synchronisation
		select {
		case p.EdgesChan <- l:
		case <-time.After(5 * time.Second):
			t.Fatalf("driver did not take edge %v within 5s", l)
		}
		next = time.Now().Add(spacing) // from the hand-over: a late taker must not squeeze edges together
	}
}

func level(p *gpiotest.Pin) pgpio.Level {
	p.Lock()
	defer p.Unlock()
	return p.L
}
