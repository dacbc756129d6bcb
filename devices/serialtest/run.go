package serialtest

import (
	"context"
	"testing"
	"time"

	"github.com/edgegw/edgegw/devices"
)

// Running is a Device's Run in a goroutine, its readings in a channel.
type Running struct {
	C      chan devices.Reading // every emitted reading, buffered
	done   chan error
	cancel context.CancelFunc
}

// Start calls dev.Run in a goroutine. Cleanup cancels it and waits for Run
// to return, so no goroutine outlives the test.
func Start(t testing.TB, dev devices.Device) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{C: make(chan devices.Reading, 4096), done: make(chan error, 1), cancel: cancel}
	go func() { r.done <- dev.Run(ctx, func(rd devices.Reading) { r.C <- rd }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Errorf("serialtest: Run did not return within 10s of cancel")
		}
	})
	return r
}

// Take waits for n readings, failing the test after timeout.
func (r *Running) Take(t testing.TB, n int, timeout time.Duration) []devices.Reading {
	t.Helper()
	out := make([]devices.Reading, 0, n)
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case rd := <-r.C:
			out = append(out, rd)
		case err := <-r.done:
			r.done <- err
			t.Fatalf("serialtest: Run returned %v after %d of %d readings", err, len(out), n)
		case <-deadline:
			t.Fatalf("serialtest: %d of %d readings after %s", len(out), n, timeout)
		}
	}
	return out
}

// None fails the test if a reading arrives within d (used after the last
// expected reading, to prove nothing was invented).
func (r *Running) None(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case rd := <-r.C:
		t.Fatalf("serialtest: unexpected reading %+v", rd)
	case <-time.After(d):
	}
}

// Wait waits for Run to return by itself and returns its error.
func (r *Running) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(timeout):
		t.Fatalf("serialtest: Run still running after %s", timeout)
		return nil
	}
}

// Stop cancels Run and returns what it returned.
func (r *Running) Stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	return r.Wait(t, 10*time.Second)
}
