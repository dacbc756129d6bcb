package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// crashPub is a local publisher that outlives gateway processes: it
// connects to the gateway's local broker, publishes a paced stream round
// robin over storeTopics, and when the gateway dies it connects again to the
// next one. Message i is storeTopics[i%3] with seq i/3+1.
//
// With qos 1 it uses a clean session and records a message as acknowledged
// only when its token completes without error (its PUBACK arrived); messages
// in flight when the gateway died are given up (the publisher's choice) and
// may or may not arrive.
//
// With qos 2 it is the careful publisher MQTT expects: a persistent session
// (clean session off, the same client id) and one store kept across the
// gateway's lives, so each new connection resends what is in flight (PUBLISH
// with DUP, or PUBREL) in the order it was first sent. Every message it
// stored must then arrive exactly once.
type crashPub struct {
	addr, id string
	qos      byte
	rate     float64
	store    *orderedStore

	mu        sync.Mutex
	n         int                 // messages handed to paho (qos 2: stored in its session)
	acked     map[string][]uint64 // qos 1: PUBACK received
	published map[string][]uint64 // every message handed over
	lives     int
	wake      chan struct{} // a message was acknowledged
	// tl, when set, records each connection with the message number it
	// starts at (message i is storeTopics[i%3], seq i/3+1).
	tl *timeline
}

func newCrashPub(addr, id string, qos byte, rate float64) *crashPub {
	p := &crashPub{addr: addr, id: id, qos: qos, rate: rate, acked: map[string][]uint64{}, published: map[string][]uint64{}, wake: make(chan struct{}, 1)}
	if qos == 2 {
		p.store = newOrderedStore()
	}
	return p
}

// run publishes until ctx ends.
func (p *crashPub) run(ctx context.Context) {
	for ctx.Err() == nil {
		var store paho.Store
		if p.store != nil {
			store = p.store
		}
		c := localClient(p.addr, p.id, p.qos == 1, store)
		tok := c.Connect()
		if !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
			sleepCtx(ctx, 10*time.Millisecond) // the next gateway is starting
			continue
		}
		p.mu.Lock()
		p.lives++
		lives, n := p.lives, p.n
		p.mu.Unlock()
		if p.store != nil {
			p.tl.add("publisher connection %d at message %d (seq %d), %d QoS 2 flows to resume", lives, n, n/len(storeTopics)+1, p.store.outbound())
		} else {
			p.tl.add("publisher connection %d at message %d (seq %d)", lives, n, n/len(storeTopics)+1)
		}
		p.life(ctx, c)
		c.Disconnect(0)
	}
}

type sentMsg struct {
	tok   paho.Token
	topic string
	seq   uint64
}

// life publishes on one connection until it breaks or ctx ends.
func (p *crashPub) life(ctx context.Context, c paho.Client) {
	window := make(chan sentMsg, 200)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for s := range window {
			if p.qos != 1 {
				continue
			}
			if s.tok.WaitTimeout(30*time.Second) && s.tok.Error() == nil {
				p.mu.Lock()
				p.acked[s.topic] = append(p.acked[s.topic], s.seq)
				p.mu.Unlock()
				select {
				case p.wake <- struct{}{}:
				default:
				}
			}
		}
	}()
	defer func() { close(window); wg.Wait() }()
	start := time.Now()
	for k := 0; ctx.Err() == nil && c.IsConnectionOpen(); k++ {
		if ahead := time.Duration(float64(k)/p.rate*float64(time.Second)) - time.Since(start); ahead > 2*time.Millisecond {
			sleepCtx(ctx, ahead)
		}
		p.mu.Lock()
		i := p.n
		p.mu.Unlock()
		topic := storeTopics[i%len(storeTopics)]
		seq := uint64(i/len(storeTopics) + 1)
		tok := c.Publish(topic, p.qos, false, payloadOf(topic, seq))
		if notSent(tok) {
			return // not stored by paho: the same number goes out next life
		}
		p.mu.Lock()
		p.n++
		p.published[topic] = append(p.published[topic], seq)
		p.mu.Unlock()
		window <- sentMsg{tok, topic, seq}
	}
}

// notSent reports whether paho refused a publish before storing it.
func notSent(tok paho.Token) bool {
	select {
	case <-tok.Done():
		err := tok.Error()
		return errors.Is(err, paho.ErrNotConnected) || (err != nil && err.Error() == "no message IDs available")
	default:
		return false
	}
}

// ackedCount is how many messages got their PUBACK (qos 1).
func (p *crashPub) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.acked {
		n += len(s)
	}
	return n
}

// waitAcked waits until n more messages than now are acknowledged, or
// timeout.
func (p *crashPub) waitAcked(n int, timeout time.Duration) bool {
	target := p.ackedCount() + n
	deadline := time.After(timeout)
	for p.ackedCount() < target {
		select {
		case <-p.wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			return false
		}
	}
	return true
}

func (p *crashPub) snapshot() (acked, published map[string][]uint64, lives int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	acked, published = map[string][]uint64{}, map[string][]uint64{}
	for k, v := range p.acked {
		acked[k] = append([]uint64(nil), v...)
	}
	for k, v := range p.published {
		published[k] = append([]uint64(nil), v...)
	}
	return acked, published, p.lives
}

// orderedStore is paho's message store kept in memory across client
// objects, returning keys in the order they were first stored (paho's
// MemoryStore returns them in map order, which would resend in-flight
// messages out of order after a reconnect).
type orderedStore struct {
	mu   sync.Mutex
	keys []string
	m    map[string]packets.ControlPacket
}

var _ paho.Store = (*orderedStore)(nil)

func newOrderedStore() *orderedStore { return &orderedStore{m: map[string]packets.ControlPacket{}} }

func (s *orderedStore) Open()  {}
func (s *orderedStore) Close() {}

func (s *orderedStore) Put(key string, m packets.ControlPacket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok {
		s.keys = append(s.keys, key)
	}
	s.m[key] = m
}

func (s *orderedStore) Get(key string) packets.ControlPacket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key]
}

func (s *orderedStore) All() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys...)
}

func (s *orderedStore) Del(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok {
		return
	}
	delete(s.m, key)
	for i, k := range s.keys {
		if k == key {
			s.keys = append(s.keys[:i], s.keys[i+1:]...)
			break
		}
	}
}

func (s *orderedStore) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys, s.m = nil, map[string]packets.ControlPacket{}
}

// outbound counts the messages still in flight (paho keys "o.<id>").
func (s *orderedStore) outbound() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, k := range s.keys {
		if len(k) > 2 && k[:2] == "o." {
			n++
		}
	}
	return n
}

func (s *orderedStore) String() string { return fmt.Sprintf("%d keys", len(s.All())) }
