package broker

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// acker sends the acknowledgements the broker held back until the outbox
// had the messages on disk, and routes those messages to local subscribers.
//
// The outbox completes a whole group commit at once; writing each PUBACK
// with its own write (mochi's WritePacket) cost one syscall per message and
// ran on the outbox's committer, delaying the next commit (measured by
// `make bench`: steady QoS 1 intake 0.83× Mosquitto's). Here completions are
// queued, and one goroutine writes all acknowledgements due to a client in
// a single write, off the committer. Order per client is kept.
//
// A completion that finds the acker idle, with nothing queued, is processed
// on the completing goroutine instead (pushNow): at the rates sensors
// publish every message comes alone, and waking the acker's goroutine for
// it cost more than the acknowledgement (the hot path's futex calls fell by
// a third without that hand-off, measured with strace on test/hotpath's
// paced benchmark). A completion that comes while the acker is busy is
// queued and coalesced as before.
//
// Hold and Release bracket a burst: between them completions are queued
// without waking the acker, and Release processes them on its goroutine, one
// write per client. The bridge's upstream reader holds while it completes
// the messages whose PUBACKs came in one read from the upstream connection
// (at saturation a dozen or more): one write(2) to the publisher for all of
// them, where writing each acknowledgement at once cost a syscall per
// message (28 % of the gateway's CPU at saturation under a 25 % CPU cap,
// make bench's slow-board run with BENCH_PPROF).
type acker struct {
	b     *Broker
	mu    sync.Mutex
	q     []ackItem
	busy  bool // a goroutine is processing items taken from q
	holds int  // Hold calls not yet released
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

type ackItem struct {
	cl    *mqtt.Client
	id    uint16 // the PUBLISH's packet identifier
	qos   byte
	topic string
	// route is the packet to route to local subscribers once acknowledged
	// (DUP cleared), or nil: nobody on the board subscribed to its topic
	// when it came in and it is not retained. Keeping the 800-byte packet
	// only then spares most messages a copy on the heap.
	route *packets.Packet
	err   error
}

func newAcker(b *Broker) *acker {
	a := &acker{b: b, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go a.run()
	return a
}

// push queues it for the acker's goroutine.
func (a *acker) push(it ackItem) {
	a.mu.Lock()
	a.q = append(a.q, it)
	a.mu.Unlock()
	a.poke()
}

// pushNow processes it on the calling goroutine if the acker is idle and
// nothing is queued (so order is kept), else queues it. The caller must
// hold none of mochi's locks: a completion made synchronously inside the
// publish hook is pushed, not processed here.
func (a *acker) pushNow(it ackItem) {
	a.mu.Lock()
	if a.holds > 0 && !a.busy && !a.stopped() {
		a.q = append(a.q, it) // Release processes it
		a.mu.Unlock()
		return
	}
	if a.busy || len(a.q) > 0 || a.stopped() {
		a.q = append(a.q, it)
		a.mu.Unlock()
		a.poke()
		return
	}
	a.busy = true
	a.mu.Unlock()
	one := [1]ackItem{it}
	a.process(one[:])
	a.mu.Lock()
	a.busy = false
	more := len(a.q) > 0
	a.mu.Unlock()
	if more {
		a.poke() // queued while this one was processed
	}
}

// hold makes completions pushed with pushNow wait for release.
func (a *acker) hold() {
	a.mu.Lock()
	a.holds++
	a.mu.Unlock()
}

// release ends a hold: the last one processes what waits, on the calling
// goroutine, unless the acker's goroutine is at it.
func (a *acker) release() {
	a.mu.Lock()
	a.holds--
	if a.holds > 0 || a.busy || len(a.q) == 0 || a.stopped() {
		a.mu.Unlock()
		return
	}
	a.busy = true
	batch := a.q
	a.q = nil
	a.mu.Unlock()
	a.process(batch)
	a.mu.Lock()
	a.busy = false
	if a.q == nil {
		clear(batch)
		a.q = batch[:0] // reuse the array
	}
	more := len(a.q) > 0
	a.mu.Unlock()
	if more {
		a.poke()
	}
}

func (a *acker) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *acker) stopped() bool {
	select {
	case <-a.stop:
		return true
	default:
		return false
	}
}

func (a *acker) close() {
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	<-a.done
}

func (a *acker) run() {
	defer close(a.done)
	var batch []ackItem
	for {
		select {
		case <-a.stop:
			return
		case <-a.wake:
		}
		a.mu.Lock()
		if a.busy {
			a.mu.Unlock()
			continue // pushNow is processing; it pokes again if more came
		}
		a.busy = true
		batch, a.q = a.q, batch[:0]
		a.mu.Unlock()
		a.process(batch)
		clear(batch)
		a.mu.Lock()
		a.busy = false
		more := len(a.q) > 0
		a.mu.Unlock()
		if more {
			a.poke()
		}
	}
}

func (a *acker) process(batch []ackItem) {
	if len(batch) == 1 && batch[0].err == nil {
		a.processOne(batch[0])
		return
	}
	b := a.b
	bufs := map[*mqtt.Client][]byte{}
	var order []*mqtt.Client
	refused := map[*mqtt.Client]bool{}
	for _, it := range batch {
		if refused[it.cl] {
			continue
		}
		if it.err != nil {
			// Send what this client is owed before the refusal, then drop
			// the connection so the publisher resends the refused message.
			a.write(it.cl, bufs[it.cl])
			delete(bufs, it.cl)
			refused[it.cl] = true
			b.log.Warn("message refused; disconnecting the publisher so it resends", "client", clientID(it.cl), "topic", it.topic, "reason", it.err)
			_ = disconnectQuota(b.srv, it.cl)
			continue
		}
		typ := byte(packets.Puback)
		if it.qos == 2 {
			typ = packets.Pubrec
			expectPubrel(b.srv, it.cl, it.id)
		}
		buf, ok := bufs[it.cl]
		if !ok {
			order = append(order, it.cl)
		}
		// PUBACK / PUBREC with success and no properties: the same four
		// bytes in MQTT 3.1.1 and 5.
		bufs[it.cl] = append(buf, typ<<4, 2, byte(it.id>>8), byte(it.id))
	}
	for _, cl := range order {
		a.write(cl, bufs[cl])
	}
	for _, it := range batch {
		if it.err != nil || refused[it.cl] {
			continue
		}
		a.route(it)
	}
}

// route hands an acknowledged message to local subscribers, if it has any.
func (a *acker) route(it ackItem) {
	if it.route == nil {
		return // nobody on the board listens: skip mochi's whole publish path
	}
	if err := inject(a.b.srv, a.b.route, *it.route); err != nil {
		a.b.log.Warn("local routing failed", "topic", it.topic, "error", err)
	}
}

// processOne is process for a single accepted message, without the maps
// a batch needs.
func (a *acker) processOne(it ackItem) {
	b := a.b
	typ := byte(packets.Puback)
	if it.qos == 2 {
		typ = packets.Pubrec
		expectPubrel(b.srv, it.cl, it.id)
	}
	ack := [4]byte{typ << 4, 2, byte(it.id >> 8), byte(it.id)}
	a.write(it.cl, ack[:])
	a.route(it)
}

// write sends a client the acknowledgements due to it in one write
// (writeRaw): the write only queues, so a publisher that stops reading
// cannot hold up everyone else's acknowledgements.
func (a *acker) write(cl *mqtt.Client, p []byte) {
	if len(p) == 0 {
		return
	}
	if err := writeRaw(cl, p); err != nil {
		a.b.log.Debug("acknowledgements not written", "client", clientID(cl), "error", err)
	}
}
