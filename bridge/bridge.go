// Package bridge carries messages between the local broker and a remote one:
// topic rules like Mosquitto's, a durable outbox for QoS 1 and 2, a bounded
// memory ring for QoS 0, and the upstream MQTT session over (mutual) TLS.
//
// The upstream session is our own small MQTT client on mochi-mqtt's packet
// codec rather than paho. The reason is the outbox: exactly-once delivery
// across a crash needs the packet identifier of every QoS 2 message to be
// known again after a restart, the PUBREC state to be durable before PUBREL
// goes out, and the in-flight window to be fed straight from the on-disk log
// in order. paho keeps its own in-flight store, picks identifiers itself and
// acknowledges through callbacks that cannot hold a PUBREL until our fsync;
// bolting the outbox onto it would mean two stores that can disagree after a
// crash. Here the identifier is a pure function of the outbox sequence number
// (see pid), and the only per-message state written is the outbox itself.
//
// Concurrency: Accept runs on the local publisher's goroutine (the broker's
// or a device's). It never waits on the network; under full_policy "block"
// it waits for outbox space until Close releases it. While the sender waits
// it may send the message itself (direct.go), which writes to the
// connection only when the write cannot wait (a kernel socket, little in
// flight) and otherwise hands over as before. Its done callback runs
// on the outbox committer and must return at once. Run owns one session at a
// time; a session's reader, flusher, pinger and senders are joined before
// the next connection is dialled, and every deadline on the connection goes
// through one limit (deadline.go) so a stop is bounded. wmu guards the write
// buffer and is held by the flusher across the network write: anything that
// writes (write) can wait for the network, so code on the committer must not
// write directly — the PUBREL after MarkReleased still does, which on a
// slow uplink delays the committer. Deliver runs on the reader goroutine and
// must return quickly: while it runs nothing is read from upstream. Stats
// reads atomics and copies under mu only.
package bridge

import (
	"context"
	"crypto/tls"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegw/edgegw/bridge/deadletter"
	"github.com/edgegw/edgegw/bridge/outbox"
	"github.com/edgegw/edgegw/internal/defaults"
)

// Message is one message taken from the local broker.
type Message struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retain   bool
	Origin   string // local publisher's client ID; "" for the gateway's own
	PacketID uint16
	Dup      bool
}

// Endpoint is one upstream broker address.
type Endpoint struct {
	Addr string // host:port
	TLS  bool
}

// Options configure a Bridge.
type Options struct {
	Endpoints []Endpoint
	// TLS returns the client TLS configuration; it is called for every
	// connection attempt, so replaced certificate files are picked up.
	TLS          func() (*tls.Config, error)
	ClientID     string
	Username     string
	Password     []byte
	CleanSession bool
	Keepalive    time.Duration
	// Version is the MQTT protocol level: 4 (3.1.1, default) or 5.
	Version    byte
	Inflight   int
	ReplayRate int // messages per second upstream, 0 = no cap
	// LiveFirst sends messages that arrive while a backlog drains ahead of
	// the backlog (see livefirst.go for what it does to per-topic order).
	LiveFirst bool
	// MaxPayload is the largest payload sent upstream (a broker profile's
	// limit); a larger message goes to the dead-letter store. 0 = none.
	MaxPayload int
	BackoffMin time.Duration
	BackoffMax time.Duration
	// ConnectTimeout bounds dialing, TLS and waiting for CONNACK (default
	// 10 s).
	ConnectTimeout time.Duration
	// AckTimeout is how long messages may sit in flight with no
	// acknowledgement at all before the link counts as dead (default two
	// keepalives plus ConnectTimeout).
	AckTimeout time.Duration
	Rules      []Rule

	Outbox *outbox.Outbox
	QoS0   *outbox.Ring
	// DeadLetter keeps the messages the server refuses for good (and those
	// over its Maximum Packet Size); nil drops them with an Error log.
	DeadLetter *deadletter.Store

	// Batch, when set, brackets the completions of one read from the
	// upstream connection: the session's reader calls Hold before it
	// completes the first message acknowledged in what it read, and Release
	// before it reads from the connection again (or ends). The local broker
	// writes the PUBACKs a publisher is owed for them in one write. The
	// outbox brackets the completions of one commit with it too.
	Batch Batcher

	// Deliver hands a message that came down to the local broker.
	Deliver func(topic string, payload []byte, qos byte, retain bool) error
	// Explain turns a connection error into a plain sentence (TLS causes);
	// nil uses the error text.
	Explain func(err error, addr string) string
	// Dial opens the TCP connection; nil uses net.Dialer.
	Dial   func(ctx context.Context, addr string) (net.Conn, error)
	Logger *slog.Logger

	// Will, when set, is called before each CONNECT; a non-nil result is that connection's Last Will.
	// On a clean stop the bridge publishes it itself before DISCONNECT (which
	// discards a Will), so subscribers see it either way.
	Will func() *Will
	// OnConnect, when set, is called once per connection after CONNACK (and SUBACK), before the
	// backlog is sent; what it publishes through pub goes out first (QoS 0 or 1, not via the outbox).
	// pub stays usable for QoS 0 until the connection ends (then it returns
	// an error), for messages that must not be stored, such as Sparkplug data.
	OnConnect func(pub func(topic string, payload []byte, qos byte, retain bool) error)
}

// Batcher holds back and releases local acknowledgements (Options.Batch).
type Batcher interface {
	Hold()
	Release()
}

// Will is a Last Will: the message the upstream broker publishes for us
// when our connection ends without DISCONNECT.
type Will struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

// Stats is the bridge's state for metrics and `edgegw status`.
type Stats struct {
	LinkUp            bool
	Endpoint          string
	Connects          uint64
	ConnectFailures   uint64
	LinkDowns         uint64
	SentPublish       uint64
	Acked             uint64
	Inflight          int
	Received          uint64 // messages that came down
	DuplicatesAvoided uint64
	Refused           uint64 // local messages the outbox refused (full)
	LastError         string
	Outbox            outbox.Stats
	QoS0Dropped       uint64
	QoS0Queued        int
	// Flaps counts sessions that went down soon after CONNACK (under 10 s)
	// or without acknowledging anything they were sent.
	Flaps uint64
	// Window is the in-flight window of the current (or last) session:
	// min(inflight, the server's Receive Maximum).
	Window int
	// TransientRefusals counts PUBACK/PUBREC refusals the session backed off
	// from and resent (quota exceeded, server busy, …).
	TransientRefusals uint64
	// DeadLettered counts messages moved to the dead-letter store since
	// start; DeadLetterDropped those refused for good that could not be kept
	// (store full or none).
	DeadLettered, DeadLetterDropped uint64
	// DeadLetter is the store's state (nil without a store).
	DeadLetter *deadletter.Stats
	// QoS2Downgraded is set once the server answered a QoS 2 PUBLISH with
	// PUBACK: QoS 2 rules are at-least-once on this broker.
	QoS2Downgraded bool
}

// Bridge is the running bridge.
type Bridge struct {
	o   Options
	log *slog.Logger

	linkUp            atomic.Bool
	connects          atomic.Uint64
	connectFailures   atomic.Uint64
	linkDowns         atomic.Uint64
	sent              atomic.Uint64
	acked             atomic.Uint64
	received          atomic.Uint64
	duplicatesAvoided atomic.Uint64
	refused           atomic.Uint64
	inflightN         atomic.Int64
	flaps             atomic.Uint64
	window            atomic.Int64
	transient         atomic.Uint64
	deadLettered      atomic.Uint64
	deadDropped       atomic.Uint64
	qos2Downgraded    atomic.Bool
	backlogged        atomic.Bool         // live first applies (a backlog drains)
	liveC             chan outbox.Message // live-first hand-over to the sender
	// direct: messages are sent from the goroutine that appends them when
	// the sender waits (direct.go); cur is the session they go to.
	direct     bool
	cur        atomic.Pointer[conn]
	directSent atomic.Uint64 // messages sent by direct sends (tests)

	mu       sync.Mutex
	lastErr  string
	endpoint string
	maxSent  uint64 // highest seq that may have been sent before, for the DUP flag
	// assignedID is the client id the server assigned (MQTT 5), used on
	// reconnects so the server finds its session again.
	assignedID string
	// transientSeq and transientN count transient refusals of one message
	// in a row.
	transientSeq uint64
	transientN   int
	causes       map[byte]bool // dead-letter causes logged at Warn already
	acceptCtx    context.Context
	stop         context.CancelFunc
}

// New makes a Bridge. Run starts the upstream session.
func New(o Options) *Bridge {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	defaults.Set(&o.Keepalive, DefaultKeepalive)
	if o.Version == 0 {
		o.Version = DefaultVersion
	}
	defaults.Set(&o.ConnectTimeout, DefaultConnectTimeout)
	defaults.Set(&o.Inflight, DefaultInflight)
	defaults.Set(&o.BackoffMin, DefaultBackoffMin)
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(o.BackoffMin, DefaultBackoffMax)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bridge{o: o, log: o.Logger, acceptCtx: ctx, stop: cancel}
	if o.LiveFirst {
		b.liveC = make(chan outbox.Message, liveDepth)
	}
	if o.Outbox != nil && o.Batch != nil {
		// A commit's completions, too, acknowledge locally in one write.
		o.Outbox.SetCompletionBatch(o.Batch)
	}
	if o.Outbox != nil {
		// What an earlier run stored may have gone up before it ended.
		b.maxSent = o.Outbox.FirstSeqThisRun() - 1
		// Live first and a replay rate decide what the sender sends next
		// and when; then every message goes through it.
		if !o.LiveFirst && o.ReplayRate == 0 {
			b.direct = true
			o.Outbox.SetPushHook(b.kick)
		}
	}
	return b
}

// Wants reports whether a local topic is bridged out.
func (b *Bridge) Wants(topic string) bool {
	_, _, ok := outRule(b.o.Rules, topic)
	return ok
}

// originOf is what the outbox remembers a local QoS 2 message by, with its
// packet identifier: the publisher's client id and a fingerprint of the
// topic and payload. A publisher may reuse a packet identifier as soon as
// its exchange completes (a new client object restarts at 1, some clients
// always use 1), so identifier alone would match an older, completed
// message and drop a new one that never got stored; like Mosquitto's
// "reused message ID" check, a DUP counts as a resend only if it is the
// same message.
func originOf(m Message) string {
	h := fnv.New64a()
	h.Write([]byte(m.Topic))
	h.Write([]byte{0})
	h.Write(m.Payload)
	return fmt.Sprintf("%s\x00%016x", m.Origin, h.Sum64())
}

// Accept takes a local message for upstream. done (nil for the gateway's own
// messages and QoS 0) is called once the message is durable or refused.
func (b *Bridge) Accept(m Message, done func(error)) {
	remote, ruleQoS, ok := outRule(b.o.Rules, m.Topic)
	if !ok {
		if done != nil {
			done(nil)
		}
		return
	}
	q := min(m.QoS, ruleQoS)
	if q == 0 {
		if b.o.QoS0 != nil {
			b.o.QoS0.Push(outbox.Message{Topic: remote, Payload: m.Payload, Retain: m.Retain, Time: time.Now()})
		}
		if done != nil {
			done(nil)
		}
		return
	}
	if m.Dup && m.QoS == 2 && m.Origin != "" {
		// A publisher resending a QoS 2 PUBLISH after our crash: if we stored
		// it before dying, storing it again would deliver it twice.
		if _, ok := b.o.Outbox.RecentOrigin(originOf(m), m.PacketID); ok {
			b.duplicatesAvoided.Add(1)
			if done != nil {
				done(nil)
			}
			return
		}
	}
	om := outbox.Message{Topic: remote, QoS: q, Retain: m.Retain, Payload: m.Payload, Time: time.Now()}
	if m.Origin != "" {
		om.Origin, om.OriginPID = m.Origin, m.PacketID
		if q == 2 {
			om.Origin = originOf(m) // what a DUP resend is matched by
		}
	}
	// The callback keeps the message only for live first: a smaller
	// closure per message otherwise.
	cb := func(_ uint64, err error) {
		if err != nil {
			b.refused.Add(1)
		}
		if done != nil {
			done(err)
		}
	}
	if b.o.LiveFirst {
		cb = func(seq uint64, err error) {
			if err != nil {
				b.refused.Add(1)
			} else {
				live := om
				live.Seq = seq
				b.offerLive(live)
			}
			if done != nil {
				done(err)
			}
		}
	}
	err := b.o.Outbox.AppendAsync(b.acceptCtx, om, cb)
	if err != nil {
		b.refused.Add(1)
		if done != nil {
			done(err)
		}
	}
}

// Close stops accepting; pending appends blocked on a full buffer return.
func (b *Bridge) Close() { b.stop() }

// Stats returns the bridge's counters.
func (b *Bridge) Stats() Stats {
	b.mu.Lock()
	last, ep := b.lastErr, b.endpoint
	b.mu.Unlock()
	s := Stats{
		LinkUp:            b.linkUp.Load(),
		Endpoint:          ep,
		Connects:          b.connects.Load(),
		ConnectFailures:   b.connectFailures.Load(),
		LinkDowns:         b.linkDowns.Load(),
		SentPublish:       b.sent.Load(),
		Acked:             b.acked.Load(),
		Inflight:          int(b.inflightN.Load()),
		Received:          b.received.Load(),
		DuplicatesAvoided: b.duplicatesAvoided.Load(),
		Refused:           b.refused.Load(),
		LastError:         last,
		Outbox:            b.o.Outbox.Stats(),
		Flaps:             b.flaps.Load(),
		Window:            int(b.window.Load()),
		TransientRefusals: b.transient.Load(),
		DeadLettered:      b.deadLettered.Load(),
		DeadLetterDropped: b.deadDropped.Load(),
		QoS2Downgraded:    b.qos2Downgraded.Load(),
	}
	if b.o.DeadLetter != nil {
		ds := b.o.DeadLetter.Stats()
		s.DeadLetter = &ds
	}
	if b.o.QoS0 != nil {
		s.QoS0Dropped = b.o.QoS0.Dropped()
		s.QoS0Queued = b.o.QoS0.Len()
	}
	return s
}

// firstOfCause reports whether a dead-letter cause is seen for the first
// time since start (it is then logged at Warn, later ones at Debug).
func (b *Bridge) firstOfCause(code byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.causes == nil {
		b.causes = map[byte]bool{}
	}
	if b.causes[code] {
		return false
	}
	b.causes[code] = true
	return true
}
