package outbox

import (
	"fmt"
	"time"
)

// Durability says where a QoS 1 message must be before it counts as stored
// (its done callback fires and the local publisher gets its PUBACK).
type Durability int

const (
	// DurabilityMemory (the default) keeps a QoS 1 message in a bounded
	// memory window while the upstream link is up and reports it stored
	// when upstream acknowledges it (Ack) or when it has been spilled to
	// disk and made durable, whichever comes first. A message goes to disk
	// only when it must: the link is down, it waited SpillAfter for its
	// upstream acknowledgement, the window (MemoryBytes) is full, or the
	// outbox is closing. While the uplink keeps up nothing is written.
	// QoS 2 messages always go to disk before they are first sent: exactly
	// once across a gateway crash needs a durable record before the first
	// upstream PUBLISH, because a memory-only QoS 2 message sent and lost
	// in a crash is resent by its local publisher and would go up again
	// under a new packet identifier, which a broker that delivers on
	// PUBLISH delivers twice.
	DurabilityMemory Durability = iota
	// DurabilityDisk writes and syncs every message before reporting it
	// stored (the behaviour of edgegw 0.1).
	DurabilityDisk
)

// String returns the configuration spelling of d.
func (d Durability) String() string {
	switch d {
	case DurabilityMemory:
		return "memory"
	case DurabilityDisk:
		return "disk"
	}
	return fmt.Sprintf("Durability(%d)", int(d))
}

// ParseDurability parses "memory" (or "") or "disk".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "memory", "":
		return DurabilityMemory, nil
	case "disk":
		return DurabilityDisk, nil
	}
	return 0, fmt.Errorf("outbox: durability %q: want \"memory\" or \"disk\"", s)
}

const (
	// defaultSpillAfter is how long a message waits in memory for its
	// upstream acknowledgement before it is written. A healthy uplink
	// acknowledges within a round trip (milliseconds to a few hundred on
	// a cellular link); one second covers that with margin, keeps what a
	// power cut can lose small, and lets a stalled link (keepalive-long
	// silence) spill long before it is declared down.
	defaultSpillAfter = time.Second
	// defaultMemoryBytes bounds the memory window (encoded record bytes).
	defaultMemoryBytes = 1 << 20
)

// Reasons a message went to disk (Stats.ToDisk).
const (
	reasonLinkDown   = "link_down"   // appended or in memory while the link was down
	reasonSlowAck    = "slow_ack"    // waited SpillAfter without its upstream ack
	reasonWindowFull = "window_full" // the memory window (MemoryBytes) was full
	reasonStopping   = "stopping"    // in memory at Close
	reasonQoS2       = "qos2"        // QoS 2 (durable before first send), or older than one
	reasonDisk       = "disk"        // DurabilityDisk
)

var toDiskReasons = []string{reasonLinkDown, reasonSlowAck, reasonWindowFull, reasonStopping, reasonQoS2, reasonDisk}

// memEntry is one message in the memory window. The window holds
// consecutive seqs, oldest first; an entry acknowledged while an older one
// still waits stays (acked) until it reaches the head, so that done
// callbacks fire in seq order.
type memEntry struct {
	m     Message
	size  int       // encoded record size
	at    time.Time // when it entered the window (for SpillAfter)
	done  func(uint64, error)
	acked bool
}

// completion is a done callback that is due.
type completion struct {
	done func(uint64, error)
	seq  uint64
	err  error
}

// SetLinkUp tells the outbox whether the upstream session can take
// messages now (after CONNACK and SUBACK: true; on link loss: false).
// Only while it is up are QoS 1 messages kept in memory; setting it false
// spills every message in memory to disk.
func (o *Outbox) SetLinkUp(up bool) {
	o.mu.Lock()
	o.linkUp = up
	spilled := false
	if !up {
		spilled = o.spillLocked(len(o.mem), reasonLinkDown)
	}
	o.mu.Unlock()
	if spilled {
		o.wake()
	}
}

// memReasonLocked returns why m cannot stay in memory, or "" if it can.
func (o *Outbox) memReasonLocked(m *Message, size int) string {
	switch {
	case o.opts.Durability == DurabilityDisk:
		return reasonDisk
	case m.QoS != 1:
		return reasonQoS2
	case !o.linkUp:
		return reasonLinkDown
	case int64(size) > o.opts.MemoryBytes:
		return reasonWindowFull
	}
	return ""
}

// memPushLocked keeps m (seq assigned) in memory, spilling the oldest
// entries if the window would overflow. It reports whether it spilled, and
// whether the caller must call the push hook (SetPushHook) after unlocking
// instead of a waiting Next having been woken.
func (o *Outbox) memPushLocked(m Message, size int, done func(uint64, error)) (spilled, hook bool) {
	for len(o.mem) > 0 && o.memBytes+int64(size) > o.opts.MemoryBytes {
		spilled = o.spillLocked(1, reasonWindowFull) || spilled
	}
	if o.memHead > 0 && len(o.memBuf) == cap(o.memBuf) {
		// Full at the end but free at the front: move the live part down.
		n := copy(o.memBuf, o.memBuf[o.memHead:])
		clear(o.memBuf[n:])
		o.memBuf, o.memHead = o.memBuf[:n], 0
	}
	o.memBuf = append(o.memBuf, memEntry{m: m, size: size, at: time.Now(), done: done})
	o.mem = o.memBuf[o.memHead:]
	o.memBytes += int64(size)
	o.memLive++
	if !o.spillArmed {
		o.spillArmed = true
		o.spillTimer.Reset(o.opts.SpillAfter)
	}
	switch {
	case o.pushHook != nil && o.readerWaiting > 0:
		// The consumer takes it itself (TakeNext), or wakes Next.
		hook = true
	case o.nextWaiting:
		o.nextWaiting = false
		broadcast(&o.dataCh)
	}
	return spilled, hook
}

// SetPushHook makes a message that enters the memory window while Next
// waits call fn, on the appending goroutine once the append is done and no
// lock is held, instead of waking Next: the consumer may then send it from
// that goroutine (TakeNext) and spare the hand-off to the goroutine in
// Next. fn must take every message it is called for with TakeNext, or call
// WakeNext. Set it before the first Next; nil restores the wake-up.
func (o *Outbox) SetPushHook(fn func()) {
	o.mu.Lock()
	o.pushHook = fn
	o.mu.Unlock()
}

// Batcher holds back and releases the effects of completion callbacks
// (the local broker's acknowledgements: see SetCompletionBatch).
type Batcher interface {
	Hold()
	Release()
}

// SetCompletionBatch brackets the callbacks of one commit with b's Hold
// and Release, so that what they acknowledge locally can go out together
// (one write per local publisher for a commit, not one per message). nil
// removes it.
func (o *Outbox) SetCompletionBatch(b Batcher) {
	o.mu.Lock()
	o.batch = b
	o.mu.Unlock()
}

// ReaderWaiting reports whether a reader is blocked in Next: the state in
// which TakeNext gives messages (a test waits for it before a publish it
// expects to be sent directly).
func (o *Outbox) ReaderWaiting() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.readerWaiting > 0
}

// TakeNext returns the message at the read cursor and advances the cursor,
// as Next would, but only while a Next call waits (so the consumer holds
// no message it took from Next and has not sent yet: what TakeNext returns
// comes after everything Next returned) and only from the memory window:
// it never waits and never reads the disk. A message whose topic and
// payload are longer than limit bytes is left to Next. ok is false when
// there is no such message; a waiting Next that has something to read (on
// disk, or over limit) is then woken for it.
func (o *Outbox) TakeNext(limit int) (m Message, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || o.readerWaiting == 0 {
		return Message{}, false
	}
	o.skipAckedLocked()
	if len(o.mem) > 0 && o.cursor >= o.mem[0].m.Seq {
		first := o.mem[0].m.Seq
		for i := o.cursor - first; i < uint64(len(o.mem)); i++ {
			if e := &o.mem[i]; !e.acked {
				if len(e.m.Topic)+len(e.m.Payload) > limit {
					o.wakeNextLocked() // Next takes it
					return Message{}, false
				}
				break
			}
		}
		if m, ok := o.nextFromMemoryLocked(); ok {
			return m, true
		}
	}
	if o.cursor < o.durableNext {
		o.wakeNextLocked() // on disk: Next reads it
	}
	return Message{}, false
}

// WakeNext wakes a waiting Next: the push hook's consumer could not take
// the message itself.
func (o *Outbox) WakeNext() {
	o.mu.Lock()
	o.wakeNextLocked()
	o.mu.Unlock()
}

// wakeNextLocked wakes a waiting Next, unless it has been woken already.
func (o *Outbox) wakeNextLocked() {
	if o.readerWaiting > 0 && o.nextWaiting {
		o.nextWaiting = false
		broadcast(&o.dataCh)
	}
}

// spillLocked moves the n oldest memory entries to the committer queue, in
// seq order: an unacknowledged one as a record to write, an acknowledged
// one (waiting for an older entry's callback) as a callback only. It
// reports whether it queued anything.
func (o *Outbox) spillLocked(n int, reason string) bool {
	n = min(n, len(o.mem))
	for i := 0; i < n; i++ {
		e := &o.mem[i]
		if e.acked {
			o.queueLocked(entry{seq: e.m.Seq, done: e.done, noWrite: true})
		} else {
			start := len(o.qbuf)
			o.qbuf = appendRecord(o.qbuf, &e.m)
			o.queueLocked(entry{seq: e.m.Seq, start: start, end: len(o.qbuf), t: e.m.Time, done: e.done})
			o.memBytes -= int64(e.size)
			o.memLive--
			o.st.toDisk[reason]++
		}
	}
	o.memPopLocked(n)
	return n > 0
}

// memKeepEntries is the largest window array kept while memory is empty;
// a burst's bigger array goes back to the GC.
const memKeepEntries = 1024

// memPopLocked removes the n oldest entries. The array is reused, so a
// message that is in memory for a moment costs no allocation.
func (o *Outbox) memPopLocked(n int) {
	clear(o.memBuf[o.memHead : o.memHead+n])
	o.memHead += n
	if o.memHead == len(o.memBuf) {
		o.memBuf, o.memHead = o.memBuf[:0], 0
		if cap(o.memBuf) > memKeepEntries {
			o.memBuf = nil
		}
	}
	o.mem = o.memBuf[o.memHead:]
}

// queueLocked appends e to the committer queue. Every queued entry counts
// in inCommit until the committer hands its callback over, so that a
// newer message acknowledged from memory completes after it.
func (o *Outbox) queueLocked(e entry) {
	e.queued = time.Now()
	o.qents = append(o.qents, e)
	o.inCommit++
}

// onSpillTimer spills the memory entries that waited SpillAfter for their
// upstream acknowledgement, and re-arms for the next oldest. It runs only
// while memory is not empty: no wake-ups at rest.
func (o *Outbox) onSpillTimer() {
	o.mu.Lock()
	o.spillArmed = false
	if o.closed {
		o.mu.Unlock()
		return
	}
	now := time.Now()
	n := 0
	for n < len(o.mem) && now.Sub(o.mem[n].at) >= o.opts.SpillAfter {
		n++
	}
	spilled := o.spillLocked(n, reasonSlowAck)
	if len(o.mem) > 0 {
		o.spillArmed = true
		o.spillTimer.Reset(max(time.Millisecond, o.opts.SpillAfter-now.Sub(o.mem[0].at)))
	}
	o.mu.Unlock()
	if spilled {
		o.wake()
	}
}

// memAckLocked acknowledges seq, which is in memory. It appends the
// callbacks now due to due, to be run with runCompletions after unlocking,
// and reports whether the committer must be woken.
func (o *Outbox) memAckLocked(seq uint64, due []completion) ([]completion, bool) {
	e := &o.mem[seq-o.mem[0].m.Seq]
	if e.acked {
		return due, false
	}
	e.acked = true
	e.m = Message{Seq: seq} // the payload is not needed any more
	o.memBytes -= int64(e.size)
	o.memLive--
	o.st.memAcked++
	o.ackLocked(seq, seq+1)
	if o.epBlock.active {
		broadcast(&o.spaceCh) // window bytes count in usage
	}
	// Complete the acknowledged prefix. While older messages wait for the
	// committer, their callbacks come first: queue these behind them.
	n := 0
	for n < len(o.mem) && o.mem[n].acked {
		n++
	}
	if n == 0 {
		return due, false
	}
	if o.inCommit > 0 {
		return due, o.spillLocked(n, "")
	}
	for i := 0; i < n; i++ {
		if d := o.mem[i].done; d != nil {
			due = append(due, completion{done: d, seq: o.mem[i].m.Seq})
		}
	}
	o.memPopLocked(n)
	return due, false
}

// runCompletions calls due callbacks, unless another goroutine is calling
// callbacks now, which then calls these after its own: callbacks run one
// at a time and in the order they became due (seq order), and a callback
// may call back into the outbox.
func (o *Outbox) runCompletions(due []completion) {
	o.mu.Lock()
	if o.cbBusy {
		o.cbQueue = append(o.cbQueue, due...)
		o.mu.Unlock()
		return
	}
	o.cbBusy = true
	o.mu.Unlock()
	for _, c := range due {
		c.done(c.seq, c.err)
	}
	o.drainCompletions()
}

// drainCompletions runs the callbacks other goroutines queued while this
// one held cbBusy, then releases it.
func (o *Outbox) drainCompletions() {
	for {
		o.mu.Lock()
		q := o.cbQueue
		if len(q) == 0 {
			o.cbBusy = false
			o.mu.Unlock()
			return
		}
		o.cbQueue = nil
		o.mu.Unlock()
		for _, c := range q {
			c.done(c.seq, c.err)
		}
	}
}

// nextFromMemoryLocked returns the message at the cursor from memory, if
// the cursor is in the window and an unacknowledged entry is there.
func (o *Outbox) nextFromMemoryLocked() (Message, bool) {
	first := o.mem[0].m.Seq
	for i := o.cursor - first; i < uint64(len(o.mem)); i++ {
		e := &o.mem[i]
		if e.acked {
			continue
		}
		o.cursor = e.m.Seq + 1
		if e.m.Seq <= o.maxGiven {
			o.st.replayed++
		} else {
			o.maxGiven = e.m.Seq
		}
		return e.m, true
	}
	o.cursor = first + uint64(len(o.mem))
	return Message{}, false
}

// spanEnd returns the end of the span holding x, or x if x is not in the set.
func (q *seqSet) spanEnd(x uint64) uint64 {
	i := q.search(x + 1)
	if i < len(q.s) && q.s[i].lo <= x && x < q.s[i].hi {
		return q.s[i].hi
	}
	return x
}

// maxSeq returns the end of the highest span, or 0.
func (q *seqSet) maxSeq() uint64 {
	if len(q.s) == 0 {
		return 0
	}
	return q.s[len(q.s)-1].hi
}
