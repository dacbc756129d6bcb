package extbroker

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/internal/mosquittotest"
)

// recorder is the bridge's side: it takes messages on its filters and, for
// QoS 1 and 2, calls done at once or holds it until release.
type recorder struct {
	filters []string
	hold    bool

	mu    sync.Mutex
	got   []broker.Message
	dones []func(error)
	ch    chan struct{}
}

func newRecorder(hold bool, filters ...string) *recorder {
	return &recorder{filters: filters, hold: hold, ch: make(chan struct{}, 1)}
}

func (r *recorder) Wants(topic string) bool {
	for _, f := range r.filters {
		if match(f, topic) {
			return true
		}
	}
	return false
}

func (r *recorder) Accept(m broker.Message, done func(error)) {
	r.mu.Lock()
	r.got = append(r.got, m)
	if done != nil {
		if r.hold {
			r.dones = append(r.dones, done)
		} else {
			defer done(nil)
		}
	}
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *recorder) messages() []broker.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.Message(nil), r.got...)
}

// release calls every held done, in order.
func (r *recorder) release() {
	r.mu.Lock()
	ds := r.dones
	r.dones = nil
	r.mu.Unlock()
	for _, d := range ds {
		d(nil)
	}
}

func (r *recorder) waitFor(t *testing.T, what string, cond func([]broker.Message) bool) []broker.Message {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		if ms := r.messages(); cond(ms) {
			return ms
		}
		select {
		case <-r.ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; the bridge took %d messages: %+v", what, len(r.messages()), r.messages())
		}
	}
}

func count(ms []broker.Message, topic, payload string) int {
	n := 0
	for _, m := range ms {
		if m.Topic == topic && string(m.Payload) == payload {
			n++
		}
	}
	return n
}

func start(t *testing.T, addr string, icept broker.Interceptor, filters ...string) *Broker {
	t.Helper()
	return startWith(t, Options{Addr: addr, Filters: filters}, icept)
}

func startWith(t *testing.T, o Options, icept broker.Interceptor) *Broker {
	t.Helper()
	o.ClientID, o.BackoffMax, o.Logger = "edgegw-test-local", 200*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if icept != nil {
		b.SetInterceptor(icept)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// localClient is another program on the board using the same broker.
func localClient(t *testing.T, addr string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("local-%d", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("local client connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

func publish(t *testing.T, c paho.Client, topic string, qos byte, payload string) {
	t.Helper()
	if tok := c.Publish(topic, qos, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// TestReadingsAndLocalPublishersReachTheBridge: the gateway's own reading
// comes back through the out-rule subscription and is taken exactly once;
// a local client's QoS 1 and QoS 2 messages are taken too, with their QoS;
// a topic outside the rules is not.
func TestReadingsAndLocalPublishersReachTheBridge(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	rec := newRecorder(false, "readings/#")
	b := start(t, mq.Addr(), rec, "readings/#")
	waitUntil(t, "the subscription", func() bool { return b.Stats().Subscriptions == 1 })

	if err := b.Publish(broker.Message{Topic: "readings/door", Payload: []byte(`{"seq":1}`), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	lc := localClient(t, mq.Addr())
	publish(t, lc, "other/x", 1, "not bridged")
	publish(t, lc, "readings/local1", 1, "q1")
	publish(t, lc, "readings/local2", 2, "q2")
	rec.waitFor(t, "three messages", func(ms []broker.Message) bool { return len(ms) >= 3 })
	// A fourth message would show up behind this one.
	if err := b.Publish(broker.Message{Topic: "readings/door", Payload: []byte(`{"seq":2}`), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	ms := rec.waitFor(t, "the second reading", func(ms []broker.Message) bool { return count(ms, "readings/door", `{"seq":2}`) == 1 })
	if len(ms) != 4 || count(ms, "readings/door", `{"seq":1}`) != 1 {
		t.Fatalf("the bridge took %d messages, want 4 (each once): %+v", len(ms), ms)
	}
	for _, m := range ms {
		want := map[string]byte{"readings/door": 1, "readings/local1": 1, "readings/local2": 2}[m.Topic]
		if m.QoS != want || m.Origin != "edgegw-test-local" || m.PacketID == 0 {
			t.Errorf("%s taken with QoS %d origin %q pid %d; want QoS %d, our client ID, a packet ID", m.Topic, m.QoS, m.Origin, m.PacketID, want)
		}
	}
	c := b.Counters()
	if !c.Connected || c.Sent != 2 || c.Received != 4 || c.PublishFailures != 0 || c.Bypassed != 0 {
		t.Errorf("counters %+v: want connected, 2 sent, 4 received, no failure, none bypassed", c)
	}

	// The gateway's liveness probe goes round through the broker on a $ topic.
	beat := make(chan struct{}, 1)
	cancel, err := b.Subscribe("$edgegw/liveness", func(broker.Message) {
		select {
		case beat <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if err := b.Publish(broker.Message{Topic: "$edgegw/liveness", Payload: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-beat:
	case <-time.After(10 * time.Second):
		t.Fatal("the probe did not come back")
	}
	if n := len(rec.messages()); n != 4 {
		t.Errorf("the bridge took the probe: %d messages", n)
	}
}

// TestAckWaitsUntilDurable: a message the bridge has not made durable is
// not acknowledged, so after the gateway goes away the broker delivers it
// again to the same session; once done is called it is acknowledged and
// not delivered a third time.
func TestAckWaitsUntilDurable(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	lc := localClient(t, mq.Addr())

	rec1 := newRecorder(true, "readings/#")
	b1 := start(t, mq.Addr(), rec1, "readings/#")
	waitUntil(t, "the subscription", func() bool { return b1.Stats().Subscriptions == 1 })
	publish(t, lc, "readings/a", 1, "held")
	publish(t, lc, "readings/b", 2, "held2")
	first := rec1.waitFor(t, "both messages", func(ms []broker.Message) bool { return len(ms) == 2 })
	b1.Close() // as if the gateway died before the outbox had them

	rec2 := newRecorder(true, "readings/#")
	b2 := start(t, mq.Addr(), rec2, "readings/#")
	ms := rec2.waitFor(t, "both messages again", func(ms []broker.Message) bool { return len(ms) == 2 })
	for i, m := range ms {
		// The bridge recognises a QoS 2 resend of a message it stored by
		// (Origin, PacketID) with DUP set.
		if !m.Dup || m.PacketID != first[i].PacketID || m.Origin != first[i].Origin {
			t.Errorf("redelivered %s with DUP %v, packet ID %d, origin %q; want DUP and the first delivery's %d, %q",
				m.Topic, m.Dup, m.PacketID, m.Origin, first[i].PacketID, first[i].Origin)
		}
	}
	if ms[1].Topic != "readings/b" || ms[1].QoS != 2 {
		t.Errorf("second redelivery %+v, want readings/b at QoS 2", ms[1])
	}
	rec2.release()
	waitUntil(t, "the acknowledgements", func() bool { return b2.acks.pending() == 0 })
	// An acknowledgement is on the wire once the broker answers a later
	// request on the same connection: a round trip through it.
	if err := b2.Publish(broker.Message{Topic: "sync/x", Payload: []byte("1"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	b2.Close()

	rec3 := newRecorder(true, "readings/#")
	b3 := start(t, mq.Addr(), rec3, "readings/#")
	waitUntil(t, "the subscription", func() bool { return b3.Stats().Subscriptions == 1 })
	publish(t, lc, "readings/c", 1, "after")
	ms = rec3.waitFor(t, "the new message", func(ms []broker.Message) bool { return count(ms, "readings/c", "after") == 1 })
	if len(ms) != 1 {
		t.Errorf("after acknowledging, the broker delivered %d messages, want only the new one: %+v", len(ms), ms)
	}
}

// TestDeliverIsNotTakenBack: a message from upstream delivered on a topic
// an out rule also matches reaches local subscribers and the gateway's own
// subscription, but is not taken for the bridge; a local client's message
// on the same topic still is.
func TestDeliverIsNotTakenBack(t *testing.T) {
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	rec := newRecorder(false, "relays/#")
	b := start(t, mq.Addr(), rec, "relays/#")
	cmds := make(chan broker.Message, 4)
	cancel, err := b.Subscribe("relays/door/set", func(m broker.Message) { cmds <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	waitUntil(t, "the subscriptions", func() bool { return b.Stats().Subscriptions == 2 })
	lc := localClient(t, mq.Addr())
	seen := make(chan string, 4)
	if tok := lc.Subscribe("relays/#", 1, func(_ paho.Client, m paho.Message) { seen <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	if err := b.Deliver(broker.Message{Topic: "relays/door/set", Payload: []byte("on"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-cmds:
		if string(m.Payload) != "on" {
			t.Errorf("command %q, want on", m.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the delivered command did not reach the local subscription")
	}
	select {
	case p := <-seen:
		if p != "on" {
			t.Errorf("local client got %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the delivered command did not reach a local client")
	}
	// A local client's message after it is taken; the echo, before it, was not.
	publish(t, lc, "relays/door/set", 1, "off")
	ms := rec.waitFor(t, "the local command", func(ms []broker.Message) bool { return count(ms, "relays/door/set", "off") == 1 })
	if len(ms) != 1 {
		t.Fatalf("the bridge took %d messages, want only the local one (the delivered one came back): %+v", len(ms), ms)
	}
	if c := b.Counters(); c.EchoesDropped != 1 || b.echo.len() != 0 {
		t.Errorf("echoes dropped %d, awaited %d; want 1 and 0", c.EchoesDropped, b.echo.len())
	}
}

// TestBrokerDownAtStart: Start returns at once with the broker down and
// keeps trying (each attempt beats the gateway's liveness); a reading
// meanwhile goes straight to the bridge; when the broker starts the client
// connects, subscribes and readings flow through it.
func TestBrokerDownAtStart(t *testing.T) {
	mosquittotest.Require(t)
	port := mosquittotest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	rec := newRecorder(false, "readings/#")
	var attempts atomic.Int32
	b := startWith(t, Options{Addr: addr, Filters: []string{"readings/#"}, Attempt: func() { attempts.Add(1) }}, rec)
	if b.Counters().Connected {
		t.Fatal("connected to nothing")
	}
	waitUntil(t, "three attempts", func() bool { return attempts.Load() >= 3 })
	if err := b.Publish(broker.Message{Topic: "readings/door", Payload: []byte("while down"), QoS: 1}); err != nil {
		t.Fatalf("a reading while the broker is down: %v", err)
	}
	if err := b.Publish(broker.Message{Topic: "status/x", Payload: []byte("x"), QoS: 1}); err == nil {
		t.Error("a message no rule takes was published to nothing without an error")
	}
	if err := b.Deliver(broker.Message{Topic: "cmd/x", Payload: []byte("x"), QoS: 1}); err == nil {
		t.Error("a delivery to nothing returned no error")
	}

	mosquittotest.Start(t, mosquittotest.Options{Port: port})
	waitUntil(t, "the connection and subscription", func() bool { return b.Stats().Subscriptions == 1 })
	if err := b.Publish(broker.Message{Topic: "readings/door", Payload: []byte("after"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	ms := rec.waitFor(t, "the reading after the start", func(ms []broker.Message) bool { return count(ms, "readings/door", "after") == 1 })
	if len(ms) != 2 || string(ms[0].Payload) != "while down" || ms[0].Origin != "" {
		t.Errorf("the bridge took %+v; want the bypassed reading (no origin), then the one through the broker", ms)
	}
	c := b.Counters()
	if c.Bypassed != 1 || c.PublishFailures != 2 || c.ConnectFailures == 0 || c.Connects != 1 {
		t.Errorf("counters %+v: want 1 bypassed, 2 failures, some failed attempts, 1 connect", c)
	}
}

// TestReconnectAfterBrokerRestart: the broker goes away and comes back on
// the same port; the client reconnects by itself and subscribes again.
func TestReconnectAfterBrokerRestart(t *testing.T) {
	mosquittotest.Require(t)
	port := mosquittotest.FreePort(t)
	mq := mosquittotest.Start(t, mosquittotest.Options{Port: port})
	rec := newRecorder(false, "readings/#")
	b := start(t, mq.Addr(), rec, "readings/#")
	waitUntil(t, "the subscription", func() bool { return b.Stats().Subscriptions == 1 })
	mq.Stop()
	waitUntil(t, "the loss to be seen", func() bool { return !b.Counters().Connected })
	mosquittotest.Start(t, mosquittotest.Options{Port: port})
	waitUntil(t, "the reconnection", func() bool { return b.Stats().Subscriptions == 1 })
	if err := b.Publish(broker.Message{Topic: "readings/x", Payload: []byte("back"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the reading after the restart", func(ms []broker.Message) bool { return count(ms, "readings/x", "back") == 1 })
	if c := b.Counters(); c.Connects != 2 {
		t.Errorf("connects %d, want 2", c.Connects)
	}
}
