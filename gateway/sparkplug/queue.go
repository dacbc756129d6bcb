package sparkplug

import (
	"context"
	"sync/atomic"
)

// DefaultQueueSize is how many readings wait for the node's goroutine
// (Options.QueueSize) when none is set.
const DefaultQueueSize = 256

// queued is a reading handed over by Offer.
type queued struct {
	device  string
	payload []byte
}

// queue is the bounded hand-off between the local broker's subscription
// handlers, which must return at once, and the node's own goroutine (Run),
// which may wait on the upstream socket or the pending file.
type queue struct {
	ch       chan queued
	dropped  atomic.Uint64 // readings refused by a full queue
	dropping atomic.Bool   // an episode of drops is under way (logged once)
}

// Offer hands a device's reading payload to the node's goroutine and
// returns at once: it never waits on the upstream link or the disk, so it
// is safe in a local broker subscription handler (which may run on the
// broker's acknowledger, shared by every client). The payload is copied.
// When QueueSize readings already wait, the reading is dropped, counted
// (Stats.QueueDropped) and logged once per episode; Offer reports whether
// the reading was queued.
func (n *Node) Offer(device string, payload []byte) bool {
	if _, ok := n.devs[device]; !ok {
		return false
	}
	select {
	case n.q.ch <- queued{device: device, payload: append([]byte(nil), payload...)}:
		if n.q.dropping.Load() && n.q.dropping.CompareAndSwap(true, false) {
			n.o.Logger.Info("sparkplug: readings are queued again", "dropped_total", n.q.dropped.Load())
		}
		return true
	default:
		total := n.q.dropped.Add(1)
		if n.q.dropping.CompareAndSwap(false, true) {
			n.o.Logger.Warn("sparkplug: readings dropped: the node is behind (the upstream link is slow or stalled)", "device", device, "queue", cap(n.q.ch), "dropped_total", total)
		}
		return false
	}
}

// Run sends the readings Offer queued, one at a time, until ctx ends; the
// caller owns the goroutine and waits for it. Readings still queued when
// ctx ends are kept for the next birth (and in the pending file) rather
// than sent, so stopping never waits on a stalled link.
func (n *Node) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			n.keepQueued()
			return
		case r := <-n.q.ch:
			n.Reading(r.device, r.payload)
		}
	}
}

// keepQueued stores what is still queued without sending it.
func (n *Node) keepQueued() {
	for {
		select {
		case r := <-n.q.ch:
			d := n.devs[r.device]
			ms, err := readingMetrics(d, r.payload)
			if err != nil {
				n.badReading(r.device, err)
				continue
			}
			n.mu.Lock()
			n.rememberLocked(r.device, ms)
			n.storeLocked(r.device, r.payload, ms)
			n.mu.Unlock()
		default:
			return
		}
	}
}
