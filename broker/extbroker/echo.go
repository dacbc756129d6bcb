package extbroker

import (
	"hash/maphash"
	"sync"
	"time"

	mqtttopic "github.com/edgegw/edgegw/internal/topic"
)

// echoes remembers messages handed to Deliver, so that the copy the broker
// sends back through an out-rule subscription is not bridged up again. An
// entry is matched by topic and payload, used once, and forgotten after the
// window or when more than max are held (oldest first).
//
// Limits: a local client that publishes the very same topic and payload
// while an echo is still awaited has one of the two copies not bridged (the
// count stays right unless the echo never comes, e.g. a QoS 0 message lost
// with the connection, in which case one local copy inside the window is
// lost); a retained delivery comes back without its retain flag, so is
// matched the same way.
type echoes struct {
	window time.Duration
	max    int
	now    func() time.Time
	seed   maphash.Seed

	mu    sync.Mutex
	next  uint64
	byKey map[echoKey][]uint64 // ids, oldest first
	fifo  []echoEntry          // every live or taken entry, oldest first
	live  map[uint64]bool
}

type echoKey struct {
	topic string
	sum   uint64
}

type echoEntry struct {
	id  uint64
	key echoKey
	at  time.Time
}

func newEchoes(window time.Duration, max int, now func() time.Time) *echoes {
	return &echoes{window: window, max: max, now: now, seed: maphash.MakeSeed(), byKey: map[echoKey][]uint64{}, live: map[uint64]bool{}}
}

func (e *echoes) key(topic string, payload []byte) echoKey {
	return echoKey{topic: topic, sum: maphash.Bytes(e.seed, payload)}
}

// add remembers one delivered message.
func (e *echoes) add(topic string, payload []byte) {
	k := e.key(topic, payload)
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	e.expire(now)
	for len(e.live) >= e.max || len(e.fifo) >= 4*e.max {
		e.evict()
	}
	e.next++
	e.fifo = append(e.fifo, echoEntry{id: e.next, key: k, at: now})
	e.live[e.next] = true
	e.byKey[k] = append(e.byKey[k], e.next)
}

// take reports whether a message is the echo of a delivered one, and
// forgets that one.
func (e *echoes) take(topic string, payload []byte) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.live) == 0 {
		return false
	}
	e.expire(e.now())
	k := e.key(topic, payload)
	ids := e.byKey[k]
	if len(ids) == 0 {
		return false
	}
	delete(e.live, ids[0])
	e.drop(k, ids)
	// Echoes mostly come back in order: forget the taken head.
	for len(e.fifo) > 0 && !e.live[e.fifo[0].id] {
		e.fifo = e.fifo[1:]
	}
	return true
}

// len is the number of echoes still awaited.
func (e *echoes) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.live)
}

func (e *echoes) expire(now time.Time) {
	for len(e.fifo) > 0 && now.Sub(e.fifo[0].at) > e.window {
		e.evict()
	}
	if len(e.fifo) == 0 {
		e.fifo = nil
	}
}

// evict forgets the oldest entry (already taken ones are skipped over).
func (e *echoes) evict() {
	for len(e.fifo) > 0 {
		old := e.fifo[0]
		e.fifo = e.fifo[1:]
		if e.live[old.id] {
			delete(e.live, old.id)
			// The oldest live entry is the oldest of its key too.
			e.drop(old.key, e.byKey[old.key])
			return
		}
	}
}

func (e *echoes) drop(k echoKey, ids []uint64) {
	if len(ids) <= 1 {
		delete(e.byKey, k)
		return
	}
	e.byKey[k] = ids[1:]
}

func match(filter, topic string) bool { return mqtttopic.Match(filter, topic) }

func validFilter(s string) bool { return mqtttopic.ValidFilter(s) == nil }
