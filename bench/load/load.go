// Package load is the benchmark's publisher and subscriber: paho clients
// that send numbered ~100-byte JSON messages through a bounded window of
// unacknowledged PUBLISHes, and count what arrives (unique, duplicated, out
// of order, end-to-end latency from the timestamp in the payload).
package load

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// WarmupTopic carries messages that only prove the path is up; the
// subscriber counts them apart.
const WarmupTopic = "readings/warmup"

// PayloadSize is the size of every message body in bytes.
const PayloadSize = 100

// Payload is the JSON body of message seq from source src, stamped now,
// padded to PayloadSize bytes.
func Payload(src, seq int, now time.Time) []byte {
	b := make([]byte, 0, PayloadSize)
	b = append(b, `{"src":`...)
	b = strconv.AppendInt(b, int64(src), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, now.UnixNano(), 10)
	b = append(b, `,"pad":"`...)
	for len(b) < PayloadSize-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// Parse reads src, seq and ts back from a Payload without allocating.
func Parse(p []byte) (src, seq int, ts int64, err error) {
	field := func(name string) (int64, error) {
		key := `"` + name + `":`
		for i := 0; i+len(key) <= len(p); i++ {
			if string(p[i:i+len(key)]) != key {
				continue
			}
			j := i + len(key)
			k := j
			for k < len(p) && p[k] >= '0' && p[k] <= '9' {
				k++
			}
			return strconv.ParseInt(string(p[j:k]), 10, 64)
		}
		return 0, fmt.Errorf("load: no %q in payload %.40q", name, p)
	}
	s, err := field("src")
	if err != nil {
		return 0, 0, 0, err
	}
	q, err := field("seq")
	if err != nil {
		return 0, 0, 0, err
	}
	ts, err = field("ts")
	return int(s), int(q), ts, err
}

// TLSFiles are the client certificate files for a mutual-TLS broker.
type TLSFiles struct{ CA, Cert, Key string }

// Conn describes how to reach a broker.
type Conn struct {
	Addr     string    // host:port
	TLS      *TLSFiles // nil = plain TCP
	ClientID string
}

func (c Conn) options() (*paho.ClientOptions, error) {
	o := paho.NewClientOptions().SetClientID(c.ClientID).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetKeepAlive(60 * time.Second).
		SetWriteTimeout(10 * time.Second)
	if c.TLS == nil {
		return o.AddBroker("tcp://" + c.Addr), nil
	}
	ca, err := os.ReadFile(c.TLS.CA)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return o.AddBroker("ssl://" + c.Addr).SetTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}), nil
}

func wait(t paho.Token, d time.Duration, what string) error {
	if !t.WaitTimeout(d) {
		return fmt.Errorf("load: %s: no answer within %s", what, d)
	}
	if err := t.Error(); err != nil {
		return fmt.Errorf("load: %s: %w", what, err)
	}
	return nil
}

// Publisher sends numbered messages with at most Window unacknowledged.
type Publisher struct {
	c      paho.Client
	Window int
	QoS    byte
	Topic  string
	Src    int
	acked  atomic.Int64
}

// Acked is how many messages of the last Run were acknowledged, in order.
func (p *Publisher) Acked() int { return int(p.acked.Load()) }

// NewPublisher connects a publisher.
func NewPublisher(c Conn, topic string, qos byte, window int) (*Publisher, error) {
	o, err := c.options()
	if err != nil {
		return nil, err
	}
	o.SetOrderMatters(false)
	cl := paho.NewClient(o)
	if err := wait(cl.Connect(), 15*time.Second, "publisher connect to "+c.Addr); err != nil {
		return nil, err
	}
	return &Publisher{c: cl, Window: window, QoS: qos, Topic: topic}, nil
}

// Close disconnects.
func (p *Publisher) Close() { p.c.Disconnect(50) }

// ackTimeout bounds the wait for one acknowledgement: a broker that stops
// acknowledging for this long is reported as stalled.
const ackTimeout = 15 * time.Second

// Run publishes seq from..to-1 as fast as the window allows; rate > 0
// paces it to rate messages per second. progress, when set, is called
// with the number sent so far every 256 messages. It returns when every
// message is acknowledged.
func (p *Publisher) Run(ctx context.Context, from, to, rate int, progress func(n int)) error {
	ring := make([]paho.Token, 0, p.Window)
	p.acked.Store(0)
	start := time.Now()
	for i := from; i < to; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if rate > 0 {
			due := start.Add(time.Duration(i-from) * time.Second / time.Duration(rate))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		if len(ring) == p.Window {
			if err := wait(ring[0], ackTimeout, "publish ack"); err != nil {
				return err
			}
			ring = ring[1:]
			p.acked.Add(1)
		}
		ring = append(ring, p.c.Publish(p.Topic, p.QoS, false, Payload(p.Src, i, time.Now())))
		if progress != nil && (i-from)%256 == 255 {
			progress(i - from + 1)
		}
	}
	for _, t := range ring {
		if err := wait(t, ackTimeout, "publish ack"); err != nil {
			return err
		}
		p.acked.Add(1)
	}
	if progress != nil {
		progress(to - from)
	}
	return nil
}

// Subscriber counts numbered messages from sources 0..Sources-1, each with
// seq 0..N-1.
type Subscriber struct {
	c       paho.Client
	n       int
	mu      sync.Mutex
	counts  []uint8
	unique  int
	total   int
	bad     int
	warm    int
	ooo     int
	maxSeen []int
	lat     []time.Duration
	keepLat bool
	first   time.Time
	last    time.Time
	arrive  []int64 // arrival times (ns since start) of first copies, for rate peaks
	t0      time.Time
	ch      chan struct{}
}

// NewSubscriber connects and subscribes filter at qos, expecting sources
// sources of n messages each. With latency set it keeps every latency.
func NewSubscriber(c Conn, filter string, qos byte, sources, n int, latency bool) (*Subscriber, error) {
	s := &Subscriber{n: n, counts: make([]uint8, sources*n), maxSeen: make([]int, sources), keepLat: latency, ch: make(chan struct{}, 1), t0: time.Now()}
	for i := range s.maxSeen {
		s.maxSeen[i] = -1
	}
	o, err := c.options()
	if err != nil {
		return nil, err
	}
	o.SetOrderMatters(true).SetMessageChannelDepth(4096)
	cl := paho.NewClient(o)
	if err := wait(cl.Connect(), 15*time.Second, "subscriber connect to "+c.Addr); err != nil {
		return nil, err
	}
	if err := wait(cl.Subscribe(filter, qos, s.handle), 15*time.Second, "subscribe "+filter); err != nil {
		cl.Disconnect(50)
		return nil, err
	}
	s.c = cl
	return s, nil
}

func (s *Subscriber) handle(_ paho.Client, m paho.Message) {
	now := time.Now()
	src, seq, ts, err := Parse(m.Payload())
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Topic() == WarmupTopic {
		s.warm++
		return
	}
	s.total++
	if err != nil || src < 0 || src >= len(s.maxSeen) || seq < 0 || seq >= s.n {
		s.bad++
		return
	}
	k := src*s.n + seq
	if s.counts[k] < 255 {
		s.counts[k]++
	}
	if s.counts[k] > 1 {
		return
	}
	s.unique++
	if seq < s.maxSeen[src] {
		s.ooo++
	} else {
		s.maxSeen[src] = seq
	}
	if s.first.IsZero() {
		s.first = now
	}
	s.last = now
	s.arrive = append(s.arrive, now.Sub(s.t0).Nanoseconds())
	if s.keepLat {
		s.lat = append(s.lat, now.Sub(time.Unix(0, ts)))
	}
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

// Close disconnects.
func (s *Subscriber) Close() { s.c.Disconnect(50) }

// Count is what arrived so far.
type Count struct {
	Unique, Total, Duplicates, OutOfOrder, Bad, Warm int
	First, Last                                      time.Time
}

// Count returns the counters.
func (s *Subscriber) Count() Count {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Count{Unique: s.unique, Total: s.total, Duplicates: s.total - s.unique - s.bad, OutOfOrder: s.ooo, Bad: s.bad, Warm: s.warm, First: s.first, Last: s.last}
}

// Reset forgets everything received (after a warm-up).
func (s *Subscriber) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
	for i := range s.maxSeen {
		s.maxSeen[i] = -1
	}
	s.unique, s.total, s.bad, s.ooo, s.warm = 0, 0, 0, 0, 0
	s.first, s.last = time.Time{}, time.Time{}
	s.lat, s.arrive = s.lat[:0], s.arrive[:0]
	s.t0 = time.Now()
}

// Missing counts the messages of source src with seq below n that have
// not arrived.
func (s *Subscriber) Missing(src, n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := 0
	for _, c := range s.counts[src*s.n : src*s.n+n] {
		if c == 0 {
			m++
		}
	}
	return m
}

// Has reports whether message (src, seq) arrived.
func (s *Subscriber) Has(src, seq int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[src*s.n+seq] > 0
}

// ErrStalled is returned by Wait when nothing new arrived for the idle time.
var ErrStalled = errors.New("load: nothing new arrived")

// Wait waits until want unique messages arrived. It gives up with
// ErrStalled when nothing new arrived for idle (counted from the later of
// the call and notBefore), or at the deadline.
func (s *Subscriber) Wait(ctx context.Context, want int, idle time.Duration, notBefore time.Time, deadline time.Time) error {
	lastN, lastT := -1, time.Now()
	if notBefore.After(lastT) {
		lastT = notBefore
	}
	for {
		c := s.Count()
		if c.Unique >= want {
			return nil
		}
		now := time.Now()
		if c.Unique != lastN {
			lastN = c.Unique
			if now.After(lastT) {
				lastT = now
			}
		}
		if now.Sub(lastT) > idle {
			return fmt.Errorf("%w for %s (%d of %d)", ErrStalled, idle, c.Unique, want)
		}
		if now.After(deadline) {
			return fmt.Errorf("load: deadline passed with %d of %d", c.Unique, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ch:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Latencies returns the p50 and p99 end-to-end latency.
func (s *Subscriber) Latencies() (p50, p99 time.Duration) {
	s.mu.Lock()
	l := slices.Clone(s.lat)
	s.mu.Unlock()
	if len(l) == 0 {
		return 0, 0
	}
	slices.Sort(l)
	return l[len(l)*50/100], l[min(len(l)-1, len(l)*99/100)]
}

// PeakRate is the highest number of first arrivals in any window-long
// interval, scaled to per second.
func (s *Subscriber) PeakRate(window time.Duration) float64 {
	s.mu.Lock()
	a := slices.Clone(s.arrive)
	s.mu.Unlock()
	slices.Sort(a)
	best, j := 0, 0
	for i := range a {
		for a[i]-a[j] > window.Nanoseconds() {
			j++
		}
		best = max(best, i-j+1)
	}
	return float64(best) / window.Seconds()
}

// Counter follows a numeric topic, such as Mosquitto's
// $SYS/broker/publish/messages/received, and keeps every sample.
type Counter struct {
	c       paho.Client
	mu      sync.Mutex
	samples []sample
}

type sample struct {
	t time.Time
	v float64
}

// WatchCounter subscribes to topic and records its values.
func WatchCounter(c Conn, topic string) (*Counter, error) {
	o, err := c.options()
	if err != nil {
		return nil, err
	}
	w := &Counter{}
	cl := paho.NewClient(o)
	if err := wait(cl.Connect(), 15*time.Second, "counter connect to "+c.Addr); err != nil {
		return nil, err
	}
	err = wait(cl.Subscribe(topic, 0, func(_ paho.Client, m paho.Message) {
		v, err := strconv.ParseFloat(string(m.Payload()), 64)
		if err != nil {
			return
		}
		w.mu.Lock()
		w.samples = append(w.samples, sample{time.Now(), v})
		w.mu.Unlock()
	}), 15*time.Second, "subscribe "+topic)
	if err != nil {
		cl.Disconnect(50)
		return nil, err
	}
	w.c = cl
	return w, nil
}

// WaitAfter waits (at most timeout) for a sample taken after t.
func (w *Counter) WaitAfter(t time.Time, timeout time.Duration) {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		w.mu.Lock()
		n := len(w.samples)
		ok := n > 0 && w.samples[n-1].t.After(t)
		w.mu.Unlock()
		if ok {
			return
		}
	}
}

// Close disconnects.
func (w *Counter) Close() { w.c.Disconnect(50) }

// PeakRate is the highest increase per second between consecutive samples
// taken after since.
func (w *Counter) PeakRate(since time.Time) float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	best := 0.0
	for i := 1; i < len(w.samples); i++ {
		a, b := w.samples[i-1], w.samples[i]
		if b.t.Before(since) {
			continue
		}
		if dt := b.t.Sub(a.t).Seconds(); dt > 0.2 {
			best = max(best, (b.v-a.v)/dt)
		}
	}
	return best
}
