// Package broker is edgegw's local MQTT broker: an embedded
// github.com/mochi-mqtt/server/v2 with a plain listener (127.0.0.1:1883 by
// default), an optional TLS listener, authentication and ACLs, and two ways in
// for the gateway itself: Publish (readings, which the bridge may take) and
// Deliver (messages that came down from upstream, which it must not take
// back up).
//
// Who imports mochi: this package, for the server (every use beyond its
// documented API is in mochi.go, which names the version it assumes; the
// password file and ACL in broker/auth are plain Go, asked by the access
// hook in protect.go). The one other importer is bridge, and only of
// mochi's packets codec (wire.go, session.go, hooks.go and their tests):
// the upstream session is our own client, encoding and decoding with the
// same code the embedded broker runs. Nothing else imports mochi.
//
// The bridge sees what local clients publish through an Interceptor. For a
// QoS 1 or 2 PUBLISH it wants, the broker holds back the PUBACK/PUBREC until
// the interceptor says the message is durable, without stalling the client's
// read loop: a publisher with a window of messages in flight has them all
// stored by one group commit. Acknowledgements go out in the order the
// messages came in, as MQTT requires.
//
// Concurrency. mochi runs one read goroutine per network client; its hooks
// (the interceptor's Wants and Accept, the access checks) run on it, so a
// slow hook stalls that client only, and none may take a lock that another
// client's hook holds for long. Accept must return at once: it may block
// only by design (the outbox's full_policy "block"), and then it holds up
// only the publisher it serves. done may be called from any goroutine
// (the outbox's committer) and never blocks: it queues for the acker, the
// one goroutine that writes held-back acknowledgements and routes those
// messages on, taking each client's lock only to queue bytes. A Subscribe
// handler runs on whichever goroutine published (a client's reader, the
// acker, the caller of Publish or Deliver) with no broker lock held: it
// must return at once (hand slow work to a goroutine of its own, as the
// gateway's command queue does) and must not call Close. It may call
// Publish or Deliver here, but not with extbroker (see there): the
// gateway's handlers, written for either, do neither. mochi writes to a client while holding that client's lock, which
// every publisher takes to pick a packet id; the connection's Write
// therefore only queues, and a writer goroutine per connection does the
// blocking write, bounded by write_timeout (conn.go). Broker.mu guards the
// listener addresses and the closed flag only and is never held while
// calling mochi. Publish, Deliver, Subscribe and Stats are safe from any
// goroutine; Close waits for every connection's writer (each bounded by
// closeFlushTimeout) and must not be called from a hook or handler.
package broker

import (
	"crypto/tls"
	"fmt"
	"github.com/edgegw/edgegw/internal/sockio"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegw/edgegw/broker/auth"
	"github.com/edgegw/edgegw/internal/ratelog"
)

// Message is one MQTT application message.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Origin is the client ID of the local publisher ("" for the gateway's own).
	Origin string
	// PacketID and Dup come from the publisher's PUBLISH; a DUP resend of a
	// QoS 2 message after a crash can be recognised by them.
	PacketID uint16
	Dup      bool
}

// Interceptor takes messages for the bridge.
type Interceptor interface {
	// Wants reports whether a topic is bridged out.
	Wants(topic string) bool
	// Accept takes a message. For QoS 1 and 2 from a network client, done is
	// non-nil and must be called exactly once, in the order Accept was called,
	// when the message is durable (nil) or was refused (an error: the
	// publisher is then disconnected, so it resends). For QoS 0 and the
	// gateway's own messages done is nil.
	Accept(m Message, done func(error))
}

// Options configure the broker.
type Options struct {
	// Listen is the plain TCP listener ("" = none).
	Listen string
	// TLSListen and TLS add a TLS listener.
	TLSListen string
	TLS       *tls.Config
	// PasswordFile and ACLFile are Mosquitto-format files (see broker/auth).
	// Without them and with AllowAnonymous every client may connect and use
	// every topic: right for a loopback-only listener.
	PasswordFile, ACLFile string
	AllowAnonymous        bool
	// UseIdentityAsUsername takes a TLS client certificate's CN as the user
	// name (on the TLS listener).
	UseIdentityAsUsername bool
	// Limits bound what one network client can cost (limits.go).
	Limits Limits
	// Protect reserves topics for the gateway itself (protect.go).
	Protect Protect
	// Logger is tagged component=broker.
	Logger *slog.Logger
}

// Broker is the running local broker.
type Broker struct {
	srv   *mqtt.Server
	opts  Options
	log   *slog.Logger
	route *mqtt.Client // inline client that re-injects held-back messages for local routing
	down  *mqtt.Client // inline client for messages from upstream: never intercepted
	own   *mqtt.Client // inline client for the gateway's own messages, after Publish handed them to the interceptor

	acks  *acker
	lim   *limits
	guard *protectHook
	icept atomic.Pointer[interceptorBox]
	subID atomic.Int32

	mu     sync.Mutex
	addrs  map[string]net.Addr
	closed bool
}

type interceptorBox struct{ Interceptor }

// New prepares a broker; Start opens its listeners.
func New(o Options) (*Broker, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	// Lines that repeat per message or per socket are rate-limited.
	rlog := ratelog.Wrap(log)
	lim := newLimits(o.Limits, rlog)
	// A packet over the limit is refused from its fixed header, before
	// mochi allocates the body. mochi logs every connect at Info; keep the
	// journal readable (mochilog.go).
	srv := newMochiServer(lim.maxPacket, mochiLog{h: rlog.Handler(), min: slog.LevelWarn})
	b := &Broker{srv: srv, opts: o, log: rlog, lim: lim, addrs: map[string]net.Addr{}}
	b.route = newInlineClient(srv, "edgegw-route")
	b.down = newInlineClient(srv, "edgegw-bridge-in")
	b.own = newInlineClient(srv, "edgegw-own")
	openNetworkQueues(srv)
	if err := srv.AddHook(&interceptHook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	var policy *auth.Policy // nil: every client may connect and use every topic
	if o.PasswordFile != "" || o.ACLFile != "" || !o.AllowAnonymous || o.UseIdentityAsUsername {
		p, err := auth.New(auth.Options{
			PasswordFile: o.PasswordFile, ACLFile: o.ACLFile, AllowAnonymous: o.AllowAnonymous,
			UseIdentityAsUsername: o.UseIdentityAsUsername, Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
		policy = p
	}
	// One access hook for everything: mochi lets a client do what any one
	// hook allows, so a second hook could not refuse anything.
	b.guard = newProtectHook(policy, o.Protect, rlog)
	if err := srv.AddHook(b.guard, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b.acks = newAcker(b)
	return b, nil
}

// SetInterceptor installs the bridge's interceptor (nil removes it).
func (b *Broker) SetInterceptor(i Interceptor) {
	if i == nil {
		b.icept.Store(nil)
		return
	}
	b.icept.Store(&interceptorBox{i})
}

// Start opens the listeners and serves until Close.
func (b *Broker) Start() error {
	if b.opts.Listen != "" {
		if err := b.listen("tcp", b.opts.Listen, nil); err != nil {
			return err
		}
	}
	if b.opts.TLSListen != "" {
		if err := b.listen("tls", b.opts.TLSListen, b.opts.TLS); err != nil {
			return err
		}
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	return nil
}

func (b *Broker) listen(id, addr string, tc *tls.Config) error {
	// Bind here so a port in use is reported now, with its address, and so
	// ":0" in tests yields the real port.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("broker: cannot listen on %s: %w (is another MQTT broker, e.g. mosquitto, running? set [broker] listen to another port)", addr, err)
	}
	ln = sockio.Listener{Listener: ln} // raw socket reads and writes (internal/sockio)
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	b.mu.Lock()
	b.addrs[id] = ln.Addr()
	b.mu.Unlock()
	if err := b.srv.AddListener(&netListener{id: id, ln: ln, lim: b.lim, clients: &b.srv.Listeners.ClientsWg}); err != nil {
		ln.Close()
		return fmt.Errorf("broker: %w", err)
	}
	return nil
}

// Addr returns the address of the plain ("tcp") or TLS ("tls") listener.
func (b *Broker) Addr(id string) net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrs[id]
}

// Close stops the listeners and disconnects clients.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	err := b.srv.Close()
	b.acks.close()
	// Each connection's writer ends within closeFlushTimeout of its close.
	b.lim.writers.Wait()
	return err
}

// Publish publishes one of the gateway's own messages: to the interceptor
// first (when it wants the topic), then to local subscribers. It returns
// the interceptor's refusal when the message could not be kept at all (a
// failing disk: the outbox refuses at once), so that the caller does not
// count it as published; the message then goes nowhere, not even to local
// subscribers, exactly as a refused local client's PUBLISH. A refusal that
// comes later, from the outbox's committer, is counted there (dropped, with
// its reason).
func (b *Broker) Publish(m Message) error {
	if box := b.icept.Load(); box != nil && box.Wants(m.Topic) {
		var (
			returned atomic.Bool
			refused  atomic.Pointer[error]
		)
		box.Accept(m, func(err error) {
			if err != nil && !returned.Load() {
				refused.Store(&err)
			}
		})
		returned.Store(true)
		if err := refused.Load(); err != nil {
			return *err
		}
	}
	return injectPublish(b.srv, b.own, m)
}

// HoldAcks makes the acknowledgements of messages completed from now on
// wait until ReleaseAcks, which writes them, one write per publisher. Each
// HoldAcks needs its ReleaseAcks, soon: the bridge's upstream reader holds
// while it completes the messages of one read from its connection.
func (b *Broker) HoldAcks() { b.acks.hold() }

// ReleaseAcks ends a HoldAcks (see there).
func (b *Broker) ReleaseAcks() { b.acks.release() }

// Deliver publishes a message that came down from upstream to local
// subscribers only; it is never handed to the interceptor, so a rule with
// direction "both" cannot send it back up.
func (b *Broker) Deliver(m Message) error {
	return injectPublish(b.srv, b.down, m)
}

// Subscribe calls fn for every message on filter until cancel is called.
// fn runs on the publisher's goroutine: keep it short.
func (b *Broker) Subscribe(filter string, fn func(Message)) (cancel func(), err error) {
	id := int(b.subID.Add(1))
	err = b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(Message{Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain, Origin: pk.Origin})
	})
	if err != nil {
		return nil, fmt.Errorf("broker: subscribe %q: %w", filter, err)
	}
	return func() { _ = b.srv.Unsubscribe(filter, id) }, nil
}

// Stats are the broker's counters.
type Stats struct {
	Clients          int64
	MessagesReceived int64
	MessagesSent     int64
	Retained         int64
	Subscriptions    int64
	// Inflight is mochi's count of QoS 1/2 exchanges in progress.
	Inflight int64
	// Connections is the number of open network connections (Limits).
	Connections int64
	// What the Limits and the topic protection refused.
	SlowClientsDropped uint64 // disconnected: did not read what they were sent
	ConnectTimeouts    uint64 // closed: no CONNECT within connect_timeout
	OversizedPackets   uint64 // disconnected: packet over max_packet_size
	ConnectionsRefused uint64 // closed at once: max_connections reached
	ForgedReadings     uint64 // publishes refused on a device's reading topic
	ForgedCommands     uint64 // publishes refused on a command topic
	// What the password file and ACL refused (broker/auth).
	AuthRefused uint64 // connections refused: bad or missing credentials
	ACLDenied   uint64 // publishes, subscriptions and deliveries the ACL denied
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	m := readMochiStats(b.srv)
	var refused, denied uint64
	if p := b.guard.policy; p != nil {
		refused, denied = p.Stats()
	}
	return Stats{
		AuthRefused: refused, ACLDenied: denied,
		Clients:          m.clients,
		MessagesReceived: m.received,
		MessagesSent:     m.sent,
		Retained:         m.retained,
		Subscriptions:    m.subscriptions,
		Inflight:         m.inflight,

		Connections:        b.lim.conns.Load(),
		SlowClientsDropped: b.lim.slowDropped.Load(),
		ConnectTimeouts:    b.lim.connectTimeouts.Load(),
		OversizedPackets:   b.lim.oversized.Load(),
		ConnectionsRefused: b.lim.connsRefused.Load(),
		ForgedReadings:     b.guard.forgedReadings.Load(),
		ForgedCommands:     b.guard.forgedCommands.Load(),
	}
}

// interceptHook hands bridged messages to the interceptor.
type interceptHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *interceptHook) ID() string { return "edgegw-bridge" }

func (h *interceptHook) Provides(b byte) bool { return b == mqtt.OnPublish }

func (h *interceptHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	b := h.b
	if cl == b.route || cl == b.down || cl == b.own {
		return pk, nil
	}
	box := b.icept.Load()
	if box == nil || !box.Wants(pk.TopicName) {
		return pk, nil
	}
	m := Message{
		Topic: pk.TopicName, Payload: pk.Payload, QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain,
		PacketID: pk.PacketID, Dup: pk.FixedHeader.Dup,
	}
	if isInline(cl) || pk.FixedHeader.Qos == 0 {
		box.Accept(m, nil)
		return pk, nil
	}
	m.Origin = clientID(cl)
	// Hold the acknowledgement until the message is durable; the acker then
	// writes it and routes the packet to local subscribers.
	// A completion inside Accept (refused, or no out rule) is queued: this
	// goroutine is in mochi's publish path. One from elsewhere (the
	// upstream's PUBACK, a commit) may be processed where it happens.
	// Local subscribers get it once it is acknowledged; whether there are
	// any is decided now, as it comes in.
	it := ackItem{cl: cl, id: pk.PacketID, qos: pk.FixedHeader.Qos, topic: pk.TopicName}
	if pk.FixedHeader.Retain || hasSubscribers(b.srv, pk.TopicName) {
		rp := pk
		rp.FixedHeader.Dup = false
		it.route = &rp
	}
	inAccept := new(atomic.Bool)
	inAccept.Store(true)
	box.Accept(m, func(err error) {
		it := it
		it.err = err
		if inAccept.Load() {
			b.acks.push(it)
		} else {
			b.acks.pushNow(it)
		}
	})
	inAccept.Store(false)
	return pk, errMochiReject
}
