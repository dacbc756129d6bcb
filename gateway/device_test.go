package gateway

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/devices"
)

// stuckCommander takes commands and holds the first one until released.
type stuckCommander struct {
	entered chan struct{}
	release chan struct{}
}

func (s *stuckCommander) Run(ctx context.Context, _ func(devices.Reading)) error {
	<-ctx.Done()
	return nil
}

func (s *stuckCommander) Command(ctx context.Context, _ []byte) error {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return nil
}

// TestCommandsDroppedCounted: the command subscription never waits for the
// device. While one command is being applied, commandQueue more wait and
// the next ones are dropped, logged and counted as "commands_dropped".
func TestCommandsDroppedCounted(t *testing.T) {
	bk, err := broker.New(broker.Options{AllowAnonymous: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := bk.Start(); err != nil {
		t.Fatal(err)
	}
	defer bk.Close()
	dev := &stuckCommander{entered: make(chan struct{}, 1), release: make(chan struct{})}
	d := &deviceRunner{name: "relay", typ: "test", topic: "relays/door", dev: dev, log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	unsub, err := d.subscribeCommands(ctx, &wg, bk, dev)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	deliver := func() {
		t.Helper()
		if err := bk.Deliver(broker.Message{Topic: "relays/door/set", Payload: []byte("on"), QoS: 1}); err != nil {
			t.Fatal(err)
		}
	}
	deliver()
	select {
	case <-dev.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the first command did not reach the device")
	}
	const extra = 3
	for range commandQueue + extra {
		deliver() // each returns at once: the handler only queues
	}
	if got := d.status().Counters["commands_dropped"]; got != extra {
		t.Fatalf("commands_dropped = %d, want %d", got, extra)
	}
	close(dev.release)
}
