package extbroker

import (
	"errors"
	"fmt"

	"github.com/edgegw/edgegw/broker"
)

// DefaultDeliverQueue is how many messages from upstream wait for the
// external broker (Options.DeliverQueue) when none is set.
const DefaultDeliverQueue = 256

// ErrDeliverQueueFull is returned by Deliver when DeliverQueue messages
// already wait for the external broker.
var ErrDeliverQueueFull = errors.New("messages from upstream wait for the local broker: queue full")

// Deliver hands a message that came down from upstream to the external
// broker and returns at once: it is called on the bridge's reader, which
// must never wait for the local broker. The message is queued (its payload
// copied) and published, in arrival order, by the client's own goroutine,
// which waits up to PublishTimeout for each acknowledgement and logs and
// counts a failure. Deliver fails at once while the broker is unreachable
// (ErrNotConnected) or when DeliverQueue messages already wait
// (ErrDeliverQueueFull, counted as DeliverDropped). If an out rule matches
// the topic the broker will send it back to us; it is remembered so that
// echo is not taken for the bridge (no loop).
func (b *Broker) Deliver(m broker.Message) error {
	select {
	case <-b.stop:
		return fmt.Errorf("extbroker: deliver %q: closed", m.Topic)
	default:
	}
	if !b.cli.IsConnectionOpen() {
		b.publishFails.Add(1)
		return fmt.Errorf("extbroker: deliver %q: %w at %s", m.Topic, ErrNotConnected, b.o.Addr)
	}
	if box := b.icept.Load(); box != nil && box.Wants(m.Topic) {
		b.echo.add(m.Topic, m.Payload)
	}
	m.Payload = append([]byte(nil), m.Payload...)
	select {
	case b.down <- m:
		return nil
	default:
		b.deliverDropped.Add(1)
		b.publishFails.Add(1)
		return fmt.Errorf("extbroker: deliver %q: %w (%d at %s)", m.Topic, ErrDeliverQueueFull, cap(b.down), b.o.Addr)
	}
}

// deliverLoop publishes what Deliver queued until stop is closed; what is
// still queued then is not sent (the bridge has acknowledged it upstream,
// as it does for a message the local broker refuses).
func (b *Broker) deliverLoop(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			if n := len(b.down); n > 0 {
				b.log.Warn("messages from upstream not delivered locally: the gateway is stopping", "messages", n)
			}
			return
		case m := <-b.down:
			if err := b.publish(m); err != nil {
				b.log.Warn("a message from upstream was not delivered locally", "topic", m.Topic, "error", err)
			}
		}
	}
}
