package extbroker

import (
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// ackQueue sends the broker's acknowledgements in the order its messages
// arrived (MQTT requires it for QoS 1), each once the bridge has made its
// message durable. They are sent from a goroutine of our own, so neither
// paho's delivery goroutine nor the outbox's committer ever waits for the
// network. An Ack for a connection that is gone is dropped by paho (v1.5.1
// and later); the broker then resends the message with the next session.
type ackQueue struct {
	mu    sync.Mutex
	first uint64        // slot number of q[0]
	q     []*ackSlot    // reserved, in arrival order
	wake  chan struct{} // one pending signal
}

type ackSlot struct {
	done bool
	m    paho.Message // nil: leave unacknowledged
}

func newAckQueue() *ackQueue {
	return &ackQueue{wake: make(chan struct{}, 1)}
}

// reserve takes the next slot, in arrival order.
func (a *ackQueue) reserve() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.q = append(a.q, &ackSlot{})
	return a.first + uint64(len(a.q)) - 1
}

// done fills a slot; m nil leaves the message unacknowledged.
func (a *ackQueue) done(slot uint64, m paho.Message) {
	a.mu.Lock()
	i := slot - a.first
	if slot < a.first || i >= uint64(len(a.q)) {
		a.mu.Unlock()
		return
	}
	a.q[i].done, a.q[i].m = true, m
	head := i == 0
	a.mu.Unlock()
	if head {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// pending is the number of slots not yet sent.
func (a *ackQueue) pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.q)
}

// take removes the completed prefix.
func (a *ackQueue) take(buf []paho.Message) []paho.Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for n < len(a.q) && a.q[n].done {
		if m := a.q[n].m; m != nil {
			buf = append(buf, m)
		}
		a.q[n] = nil
		n++
	}
	a.q = a.q[n:]
	a.first += uint64(n)
	return buf
}

// run sends completed acknowledgements until stop, then sends what is
// already complete and returns.
func (a *ackQueue) run(stop <-chan struct{}) {
	var buf []paho.Message
	for {
		select {
		case <-stop:
			for _, m := range a.take(buf[:0]) {
				m.Ack()
			}
			return
		case <-a.wake:
		}
		buf = a.take(buf[:0])
		for i, m := range buf {
			m.Ack()
			buf[i] = nil
		}
	}
}
