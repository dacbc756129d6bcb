package outbox

import (
	"context"
	"log/slog"
	"sync"
)

// ringOverhead is the bytes charged per message on top of topic and payload.
const ringOverhead = 64

// Ring is the QoS 0 side: a bounded in-memory FIFO (by bytes) that drops
// its oldest messages when full, counting them; Push never blocks.
type Ring struct {
	mu      sync.Mutex
	max     int
	bytes   int
	q       []Message // circular
	head, n int
	dropped uint64
	notify  chan struct{}
	log     *slog.Logger
	episode episode
}

// NewRing returns a ring holding at most maxBytes (topic + payload + 64
// bytes per message). A message bigger than the whole ring is dropped.
func NewRing(maxBytes int) *Ring {
	return &Ring{
		max:    maxBytes,
		notify: make(chan struct{}),
		log:    slog.New(slog.DiscardHandler),
		episode: episode{reason: "qos0_ring_full", advice: "QoS 0 messages are kept in memory only and the oldest are dropped " +
			"while the uplink cannot keep up; restore the uplink or publish with QoS 1"},
	}
}

// SetLogger sets where drop episodes are logged (default: discard).
func (r *Ring) SetLogger(l *slog.Logger) {
	r.mu.Lock()
	r.log = l
	r.mu.Unlock()
}

func ringSize(m *Message) int { return len(m.Topic) + len(m.Payload) + ringOverhead }

// Push appends m, dropping the oldest messages until it fits, and returns
// how many it dropped.
func (r *Ring) Push(m Message) (dropped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	size := ringSize(&m)
	if size > r.max {
		r.dropped++
		r.episode.drop(r.log, 1, "max_bytes", r.max)
		return 1
	}
	for r.bytes+size > r.max {
		old := &r.q[r.head]
		r.bytes -= ringSize(old)
		*old = Message{}
		r.head = (r.head + 1) % len(r.q)
		r.n--
		dropped++
	}
	if r.n == len(r.q) {
		r.grow()
	}
	r.q[(r.head+r.n)%len(r.q)] = m
	r.n++
	r.bytes += size
	if dropped > 0 {
		r.dropped += uint64(dropped)
		r.episode.drop(r.log, uint64(dropped), "max_bytes", r.max)
	} else if r.bytes <= r.max/2 {
		r.episode.end(r.log)
	}
	close(r.notify)
	r.notify = make(chan struct{})
	return dropped
}

func (r *Ring) grow() {
	nq := make([]Message, max(16, 2*len(r.q)))
	for i := 0; i < r.n; i++ {
		nq[i] = r.q[(r.head+i)%len(r.q)]
	}
	r.q, r.head = nq, 0
}

// Pop removes and returns the oldest message, waiting until one exists or
// ctx ends.
func (r *Ring) Pop(ctx context.Context) (Message, error) {
	for {
		r.mu.Lock()
		if r.n > 0 {
			m := r.q[r.head]
			r.q[r.head] = Message{}
			r.head = (r.head + 1) % len(r.q)
			r.n--
			r.bytes -= ringSize(&m)
			if r.bytes <= r.max/2 {
				r.episode.end(r.log)
			}
			r.mu.Unlock()
			return m, nil
		}
		ch := r.notify
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}

// Len returns how many messages the ring holds.
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// Dropped returns how many messages the ring has dropped since NewRing.
func (r *Ring) Dropped() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}
