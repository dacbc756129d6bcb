package bridge

import "fmt"

// Direct sends: while the link keeps up, a message that enters the outbox's
// memory window finds the sender goroutine waiting in Outbox.Next. Waking it
// to send that one message, and then the flusher to write it, cost two
// goroutine hand-offs per message (futex wake-ups, a spinning thread each),
// more than the message itself at the rates sensors publish. Instead the
// outbox calls the push hook (kick) on the goroutine that appended the
// message (a local publisher's, in the broker), which sends it from there:
// it takes it with Outbox.TakeNext, puts it into the window and writes it
// to the connection, all while the sender still waits.
//
// Order: every message is taken from the outbox and written into the write
// buffer under smu, by the sender or by a direct send, and TakeNext only
// gives a message while the sender waits in Next (so it holds none it took
// and has not written): the wire has the outbox's order. The window and the
// server's Receive Maximum hold as for the sender: a direct send needs a
// free slot (the waiting sender holds one of its own).
//
// A direct send never waits on the network, so the local publisher it runs
// for is not held up by the uplink: it gives up, and wakes the sender
// instead (the old path), when smu or wmu is taken (another send, or the
// flusher writing), when the window is full, or when the bytes in flight
// would exceed directMaxInflight. Under that bound a kernel socket's buffer
// (16 KiB at least by default) takes the write whole, so over one the
// direct send writes it at once rather than handing it to the flusher
// (over another connection, such as the net.Pipe of tests or a custom
// Options.Dial's, whose write may wait for the peer, the flusher writes).
// At saturation the flusher is busy, direct sends mostly give up, and
// messages take the sender's path, where writes are coalesced.

// directMaxInflight bounds the topic and payload bytes in flight (not yet
// acknowledged upstream, so perhaps still in the socket's buffer) for a
// direct send, including the message itself.
const directMaxInflight = 8 << 10

// maxPublishOverhead is what a PUBLISH adds to its topic and payload at
// most: fixed header, remaining length, topic length, packet identifier,
// property length.
const maxPublishOverhead = 1 + 4 + 2 + 2 + 1

// kick is the outbox's push hook: a message entered the memory window while
// the sender waited.
func (b *Bridge) kick() {
	c := b.cur.Load()
	if c == nil {
		b.o.Outbox.WakeNext()
		return
	}
	c.kick()
}

// kick sends what is due directly, or leaves a request for whoever holds
// smu, which serves it after unlocking.
func (c *conn) kick() {
	c.kickWant.Store(true)
	for c.kickWant.Load() && c.smu.TryLock() {
		c.kickWant.Store(false)
		c.sendDirect()
		c.smu.Unlock()
	}
}

// sendDirect sends the messages the waiting sender would get from Next, on
// this goroutine; smu is held. When it cannot, it wakes the sender.
func (c *conn) sendDirect() {
	ob := c.b.o.Outbox
	if c.ended {
		ob.WakeNext()
		return
	}
	if !c.wmu.TryLock() {
		ob.WakeNext() // the flusher is writing: the sender waits for it
		return
	}
	n := 0
	var err error
	for {
		c.imu.Lock()
		room := directMaxInflight - c.inBytes
		c.imu.Unlock()
		if room <= 0 {
			ob.WakeNext()
			break
		}
		slot := false
		select {
		case c.slots <- struct{}{}:
			slot = true
		default:
		}
		if !slot {
			ob.WakeNext() // window full: the sender waits for a slot
			break
		}
		// What would not fit the write buffer whole, or the bound, is left
		// to the sender (TakeNext wakes it).
		m, ok := ob.TakeNext(min(room, c.bw.Available()-maxPublishOverhead))
		if !ok {
			<-c.slots
			break
		}
		if err = c.sendLocked(m); err != nil {
			break
		}
		c.b.directSent.Add(1)
		n++
	}
	if err == nil && n > 0 {
		if c.sock {
			err = c.flushLocked()
		} else {
			c.pokeFlusher() // a net.Pipe, say, whose write waits for the reader
		}
	}
	c.wmu.Unlock()
	if err != nil {
		c.cancel(fmt.Errorf("write: %w", err))
	}
}
