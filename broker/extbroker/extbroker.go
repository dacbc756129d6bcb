// Package extbroker lets edgegw use an MQTT broker that already runs on the
// board (typically Mosquitto) as its local broker, in place of the embedded
// one: `[broker] external = "mqtt://127.0.0.1:1883"`.
//
// The gateway is then an ordinary client of that broker, with the client ID
// "edgegw-<gateway id>-local" and a persistent session (clean session
// false), over MQTT 3.1.1 with paho:
//
//   - Publish sends the gateway's own readings to the broker. They reach the
//     bridge the way every local message does: through the subscriptions
//     below, never directly — unless the broker is unreachable, in which case
//     nothing was sent and nothing will come back, so an out-rule message is
//     handed straight to the bridge (local subscribers miss it).
//   - The local filter of every out rule is subscribed at QoS 2, so QoS 1 and
//     2 publishers keep their QoS. A message is acknowledged to the broker
//     only once the bridge says it is durable: if the gateway dies first,
//     the broker redelivers it with the session (at least once into the
//     outbox; see Accepted for QoS 2).
//   - Deliver publishes what came down from upstream. The broker sends it back
//     through the out-rule subscription when an out rule also matches; the
//     topic and payload of every delivered message are remembered for a
//     short, bounded window and the echo is not handed to the bridge again
//     (MQTT 3.1.1 has no no-local subscription option).
//   - Subscribe (device commands, the liveness probe) subscribes on the
//     broker; every message is dispatched once, whatever subscriptions it
//     matches (Mosquitto sends one copy per client for overlapping
//     subscriptions).
//
// If the broker is down at start, or goes away, the client keeps trying with
// a bounded backoff and never gives up.
//
// Why paho, a second MQTT implementation beside mochi's packets (which the
// embedded broker and the bridge's upstream session speak): this mode needs
// a whole client (reconnect, a persistent session, subscriptions with
// manual acknowledgement, resent QoS 2 flows from the broker's side), and
// mochi is a server with no client. The bridge's session is a client, but
// one made for one job (draining the outbox upstream, in order); taking it
// over for a local session would give the bridge a second purpose. So the
// external-broker mode keeps a well-kept client library, and only this
// package (and tlsdiag, for paho's CONNACK error values) imports it.
//
// Guarantees: QoS 1 and 2 messages from local publishers reach the outbox
// at least once across a gateway crash (the broker resends what we did not
// acknowledge). A QoS 2 resend carries the broker's packet identifier for
// our session and DUP, passed on as Message.PacketID/Dup with Origin = our
// client ID, so the bridge's RecentOrigin check drops it when the first copy
// was stored: exactly once in practice, not in every case (a resend after a
// mere reconnect may race the first copy's append; a packet identifier is
// reused by the broker after 65535 QoS>0 messages, which only matters if
// fewer than the bridge's window of them were stored, i.e. QoS 0 rules).
// Limits: the retain flag of a local message does not survive (MQTT 3.1.1
// clears it on delivery), and paho's own goroutines may finish a moment
// after Close.
//
// Concurrency. paho delivers messages on one goroutine, in arrival order
// (onMessage): the interceptor's Wants and Accept and every Subscribe
// handler run there, one message at a time, so each must return at once.
// A handler must not call Publish: it waits (up to PublishTimeout) for the
// broker's acknowledgement, which paho cannot read while its delivery
// goroutine is busy. Accept's done may be called from any
// goroutine and never blocks: it fills the message's slot in the ack queue,
// whose own goroutine sends the acknowledgements in arrival order
// (ack.go). Publish blocks its caller for at most PublishTimeout; Deliver
// never blocks: it queues (bounded by DeliverQueue, refusals counted) for
// its own goroutine, which publishes in order (deliver.go). Subscribe and
// cancel block for at most PublishTimeout while connected. Broker.mu
// guards the subscription table, the granted filters and the connection
// bookkeeping; it is never held while calling paho or a
// handler. paho runs the connect and connection-lost handlers on goroutines
// of their own. Close waits for the first-connection loop (bounded by
// ConnectTimeout), the ack goroutine and the delivering one (bounded by
// PublishTimeout), then disconnects within 250 ms; it
// must not be called from a handler.
package extbroker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/internal/defaults"
)

// ErrNotConnected is returned by Publish and Deliver while the broker is
// unreachable.
var ErrNotConnected = errors.New("not connected to the local broker")

// Options configure the client of the external broker.
type Options struct {
	// Addr is the broker's host:port (plain TCP).
	Addr string
	// ClientID names the persistent session, e.g. "edgegw-gw-01-local".
	ClientID string
	// Username and Password, when set, log in to the broker.
	Username string
	Password []byte
	// Filters are the local filters of the bridge's out rules.
	Filters []string
	// Keepalive is the MQTT keepalive (default DefaultKeepalive).
	Keepalive time.Duration
	// ConnectTimeout bounds one connection attempt (default
	// DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait between attempts (defaults
	// DefaultBackoffMin and DefaultBackoffMax).
	BackoffMin, BackoffMax time.Duration
	// PublishTimeout bounds the wait for the broker's acknowledgement of a
	// Publish or of one delivered message (default DefaultPublishTimeout).
	PublishTimeout time.Duration
	// DeliverQueue bounds the messages from upstream that wait for the
	// broker (default DefaultDeliverQueue); beyond it Deliver refuses them.
	DeliverQueue int
	// EchoWindow and EchoMax bound the memory of delivered messages kept to
	// recognise their echo (defaults DefaultEchoWindow, DefaultEchoMax).
	EchoWindow time.Duration
	EchoMax    int
	// Attempt, when set, is called at every connection attempt (the
	// gateway's liveness: the client is alive while it keeps trying).
	Attempt func()
	// Logger is tagged component=broker.
	Logger *slog.Logger
}

// Counters are the client's own figures (Stats maps them onto the broker's).
type Counters struct {
	Connected       bool
	Connects        uint64 // successful connections, reconnections included
	ConnectFailures uint64
	Received        uint64 // messages the broker sent us
	Sent            uint64 // Publish and Deliver the broker acknowledged
	PublishFailures uint64 // Publish and Deliver not confirmed (not connected, refused, timed out)
	Bypassed        uint64 // readings handed straight to the bridge while the broker was unreachable
	EchoesDropped   uint64 // delivered messages that came back and were not sent up again
	Refused         uint64 // messages the bridge refused: left unacknowledged, so redelivered
	DeliverDropped  uint64 // messages from upstream refused because DeliverQueue already waited
	Subscriptions   int    // filters subscribed on the current connection
}

// Broker is the external broker, seen as edgegw's local broker.
type Broker struct {
	o     Options
	log   *slog.Logger
	cli   paho.Client
	icept atomic.Pointer[interceptorBox]
	echo  *echoes
	acks  *ackQueue
	down  chan broker.Message // Deliver's hand-off to deliverLoop

	mu        sync.Mutex
	subs      map[int]localSub
	granted   map[string]bool // filters subscribed on the current connection
	nextSub   int
	downSince time.Time
	everUp    bool
	closed    bool
	started   bool

	stop chan struct{}
	wg   sync.WaitGroup

	connected      atomic.Bool
	ready          atomic.Bool // connected and the out-rule filters subscribed
	connects       atomic.Uint64
	connectFails   atomic.Uint64
	received       atomic.Uint64
	sent           atomic.Uint64
	publishFails   atomic.Uint64
	bypassed       atomic.Uint64
	echoesDropped  atomic.Uint64
	refused        atomic.Uint64
	deliverDropped atomic.Uint64
}

type interceptorBox struct{ broker.Interceptor }

type localSub struct {
	filter string
	fn     func(broker.Message)
}

// New prepares the client; Start connects.
func New(o Options) (*Broker, error) {
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return nil, fmt.Errorf("extbroker: address %q is not host:port: %w", o.Addr, err)
	}
	if o.ClientID == "" {
		return nil, errors.New("extbroker: a client ID is required")
	}
	for _, f := range o.Filters {
		if !validFilter(f) {
			return nil, fmt.Errorf("extbroker: %q is not a valid topic filter", f)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	defaults.Set(&o.Keepalive, DefaultKeepalive)
	defaults.Set(&o.ConnectTimeout, DefaultConnectTimeout)
	defaults.Set(&o.BackoffMin, DefaultBackoffMin)
	defaults.Set(&o.BackoffMax, DefaultBackoffMax)
	defaults.Set(&o.PublishTimeout, DefaultPublishTimeout)
	defaults.Set(&o.EchoWindow, DefaultEchoWindow)
	o.BackoffMax = max(o.BackoffMax, o.BackoffMin)
	defaults.Set(&o.EchoMax, DefaultEchoMax)
	defaults.Set(&o.DeliverQueue, DefaultDeliverQueue)
	b := &Broker{
		o: o, log: o.Logger, subs: map[int]localSub{}, granted: map[string]bool{}, stop: make(chan struct{}),
		echo: newEchoes(o.EchoWindow, o.EchoMax, time.Now),
		acks: newAckQueue(),
		down: make(chan broker.Message, o.DeliverQueue),
	}
	po := paho.NewClientOptions().
		AddBroker("tcp://" + o.Addr).
		SetClientID(o.ClientID).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetOrderMatters(true).    // handlers run in arrival order: Accept order is the broker's order
		SetAutoAckDisabled(true). // acknowledged once durable (ack.go)
		SetAutoReconnect(true).
		SetConnectRetry(false). // the first connection is retried by connectLoop
		SetMaxReconnectInterval(o.BackoffMax).
		SetConnectTimeout(o.ConnectTimeout).
		SetKeepAlive(o.Keepalive).
		SetPingTimeout(o.ConnectTimeout).
		SetWriteTimeout(o.PublishTimeout).
		SetDefaultPublishHandler(b.onMessage). // subscriptions carry no callback: one dispatch per message
		SetOnConnectHandler(b.onConnect).
		SetConnectionLostHandler(b.onLost).
		SetConnectionAttemptHandler(b.onAttempt)
	if o.Username != "" {
		po.SetUsername(o.Username)
	}
	if o.Password != nil {
		po.SetPassword(string(o.Password))
	}
	b.cli = paho.NewClient(po)
	return b, nil
}

// SetInterceptor installs the bridge's interceptor (nil removes it). Set it
// before Start: messages the broker kept for the session arrive at once.
func (b *Broker) SetInterceptor(i broker.Interceptor) {
	if i == nil {
		b.icept.Store(nil)
		return
	}
	b.icept.Store(&interceptorBox{i})
}

// Start begins connecting and returns after the first attempt, connected or
// not: an unreachable broker is retried in the background, never an error.
func (b *Broker) Start() error {
	b.mu.Lock()
	if b.closed || b.started {
		b.mu.Unlock()
		return errors.New("extbroker: already started or closed")
	}
	b.started = true
	b.mu.Unlock()
	first := make(chan struct{})
	b.wg.Add(3)
	go func() {
		defer b.wg.Done()
		b.connectLoop(first)
	}()
	go func() {
		defer b.wg.Done()
		b.deliverLoop(b.stop)
	}()
	go func() {
		defer b.wg.Done()
		b.acks.run(b.stop)
	}()
	<-first
	return nil
}

// Close disconnects. Messages the bridge has not yet made durable stay
// unacknowledged, so the broker redelivers them to the next session.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started := b.started
	b.mu.Unlock()
	close(b.stop)
	b.wg.Wait()
	if started {
		b.cli.Disconnect(250)
	}
	b.connected.Store(false)
	b.ready.Store(false)
	return nil
}

// Addr returns the external broker's address for "tcp" (nil otherwise).
func (b *Broker) Addr(id string) net.Addr {
	if id != "tcp" {
		return nil
	}
	return tcpAddr(b.o.Addr)
}

type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }

// Stats maps the client's figures onto the local broker's: Clients is 1
// while connected (the gateway's own connection), MessagesReceived counts
// what the broker sent us and MessagesSent what we published.
func (b *Broker) Stats() broker.Stats {
	s := broker.Stats{
		MessagesReceived: int64(b.received.Load()),
		MessagesSent:     int64(b.sent.Load()),
		Subscriptions:    int64(b.subscriptions()),
	}
	if b.connected.Load() {
		s.Clients = 1
	}
	return s
}

// Counters returns the client's own figures.
func (b *Broker) Counters() Counters {
	return Counters{
		Connected:       b.connected.Load(),
		Connects:        b.connects.Load(),
		ConnectFailures: b.connectFails.Load(),
		Received:        b.received.Load(),
		Sent:            b.sent.Load(),
		PublishFailures: b.publishFails.Load(),
		Bypassed:        b.bypassed.Load(),
		EchoesDropped:   b.echoesDropped.Load(),
		Refused:         b.refused.Load(),
		DeliverDropped:  b.deliverDropped.Load(),
		Subscriptions:   b.subscriptions(),
	}
}

func (b *Broker) subscriptions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.granted)
}
