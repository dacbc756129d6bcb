package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/testenv"
)

// externalConfig is a gateway on an external local broker (a plain
// Mosquitto on loopback) bridging to the mutual-TLS upstream.
func externalConfig(t *testing.T, f certsFiles, localAddr, upAddr, rules, devices string) string {
	gwPair := clientPair(t, f, "gw-01")
	return fmt.Sprintf(`
[gateway]
id = "gw-01"
data_dir = %q
http_listen = ""
[broker]
external = "mqtt://%s"
[upstream]
address = "mqtts://%s"
backoff_max = "500ms"
[upstream.tls]
cafile = %q
certfile = %q
keyfile = %q
%s
%s
`, t.TempDir(), localAddr, upAddr, f.CA.Cert, gwPair.Cert, gwPair.Key, rules, devices)
}

const readingsOut = `
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = 1
remote_prefix = "sites/s1/gw-01/"
`

// localPaho connects a plain client to the external broker, as another
// program on the board would.
func localPaho(t *testing.T, addr string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("board-%d", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local client connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// simSeqs are the seq numbers of device sim1's readings, in arrival order.
func simSeqs(t *testing.T, ms []paho.Message) []uint64 {
	var seqs []uint64
	for _, m := range ms {
		if m.Topic() == "sites/s1/gw-01/readings/sim1" {
			seqs = append(seqs, decode(t, m).Seq)
		}
	}
	return seqs
}

// checkOnceEach fails unless seqs are 1..n, each exactly once.
func checkOnceEach(t *testing.T, seqs []uint64) {
	t.Helper()
	s := append([]uint64(nil), seqs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	for i, q := range s {
		if q != uint64(i+1) {
			t.Fatalf("readings upstream are not 1..%d once each (a gap or a duplicate): %v", len(s), seqs)
		}
	}
}

// TestExternalBrokerReadingsAndLocalPublisher: with [broker] external, the
// gateway's readings go through the board's Mosquitto and arrive upstream
// exactly once each (they come back through the out-rule subscription and
// must not be taken twice), and another program's QoS 1 message on the
// same broker under the out rule arrives upstream too.
func TestExternalBrokerReadingsAndLocalPublisher(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	f := pki(t)
	up := upstream(t, f)
	local := mosquittotest.Start(t, mosquittotest.Options{})
	const n = 20
	dev := fmt.Sprintf("[[device]]\nname = \"sim1\"\ntype = \"sim\"\nkind = \"rfid\"\ninterval = \"50ms\"\ncount = %d\n", n)

	sub := subscribe(t, f, up.Addr(), "sites/s1/gw-01/readings/#", 1)
	// A program on the board sees the readings on the local broker.
	lc := localPaho(t, local.Addr())
	onBoard := make(chan struct{}, 1)
	if tok := lc.Subscribe("readings/sim1", 1, func(paho.Client, paho.Message) {
		select {
		case onBoard <- struct{}{}:
		default:
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	gw, logs := runGateway(t, externalConfig(t, f, local.Addr(), up.Addr(), readingsOut, dev))
	if got := gw.BrokerAddr(); got != local.Addr() {
		t.Errorf("BrokerAddr %q, want the external broker %q", got, local.Addr())
	}
	waitUntil(t, 20*time.Second, "the external broker subscription", func() bool { return gw.Status().Broker.Subscriptions >= 1 })
	select {
	case <-onBoard:
	case <-time.After(20 * time.Second):
		t.Fatalf("no reading seen on the external broker\n%s", tail(logs.String(), 30))
	}

	publish := func(topic, payload string) {
		if tok := lc.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("local publish: %v", tok.Error())
		}
	}
	publish("readings/board/app", "from another program")
	publish("other/app", "no rule")
	sub.waitFor(t, 30*time.Second, "all readings and the local message upstream", func(ms []paho.Message) bool {
		local := false
		for _, m := range ms {
			local = local || (m.Topic() == "sites/s1/gw-01/readings/board/app" && string(m.Payload()) == "from another program")
		}
		return local && len(simSeqs(t, ms)) >= n
	})
	// The sim stopped at n readings: anything beyond them would be a
	// duplicate. Wait for one more local message, ordered after them all.
	publish("readings/board/app", "barrier")
	msgs := sub.waitFor(t, 30*time.Second, "the barrier", func(ms []paho.Message) bool {
		return string(ms[len(ms)-1].Payload()) == "barrier"
	})
	seqs := simSeqs(t, msgs)
	if len(seqs) != n {
		t.Errorf("%d readings upstream, want %d (each once): %v", len(seqs), n, seqs)
	}
	checkOnceEach(t, seqs)
	for _, m := range msgs {
		if m.Topic() == "sites/s1/gw-01/other/app" {
			t.Error("a topic outside the rules went upstream")
		}
	}
	if st := gw.Status(); st.Broker.Clients != 1 || st.Broker.MessagesReceived < n+2 {
		t.Errorf("broker stats %+v: want connected, at least %d messages received", st.Broker, n+2)
	}
}

// TestExternalBrokerCommandNoLoop: a command from upstream under an "in"
// rule is published on the external broker, where a program on the board
// and the gateway's own gpio_out device both get it; the "out" rule also
// matches the command topic, so the broker sends it back to the gateway,
// which must not send it up again.
func TestExternalBrokerCommandNoLoop(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	pin := &gpiotest.Pin{N: "E2E_EXT_RELAY", Num: 4343, EdgesChan: make(chan pgpio.Level)}
	if err := gpioreg.Register(pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gpioreg.Unregister(pin.N) })
	f := pki(t)
	up := upstream(t, f)
	local := mosquittotest.Start(t, mosquittotest.Options{})
	rules := `
[[upstream.topic]]
pattern = "relays/+/set"
direction = "in"
qos = 1
remote_prefix = "sites/s1/gw-01/"
[[upstream.topic]]
pattern = "relays/#"
direction = "out"
qos = 1
remote_prefix = "sites/s1/gw-01/"
`
	dev := "[[device]]\nname = \"relay\"\ntype = \"gpio_out\"\ntopic = \"relays/door\"\npin = \"E2E_EXT_RELAY\"\ninitial = \"off\"\nsafe_state = \"off\"\n"

	sub := subscribe(t, f, up.Addr(), "sites/s1/gw-01/relays/#", 1)
	lc := localPaho(t, local.Addr())
	onBoard := make(chan string, 4)
	if tok := lc.Subscribe("relays/door/set", 1, func(_ paho.Client, m paho.Message) { onBoard <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	gw, _ := runGateway(t, externalConfig(t, f, local.Addr(), up.Addr(), rules, dev))
	waitUntil(t, 20*time.Second, "the upstream link", func() bool { s := gw.Status(); return s.Bridge != nil && s.Bridge.LinkUp })
	sub.waitFor(t, 20*time.Second, "the relay's start state", func(ms []paho.Message) bool { return len(ms) >= 1 })

	pub := newPublisher(t, f, up.Addr())
	if tok := pub.Publish("sites/s1/gw-01/relays/door/set", 1, false, `{"state":"on"}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish command: %v", tok.Error())
	}
	select {
	case p := <-onBoard:
		if p != `{"state":"on"}` {
			t.Errorf("the board got %q", p)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the command did not reach the external broker")
	}
	// The relay's new state is published after the device took the
	// command from the very message the broker sent back: any loop would
	// have gone up before it.
	msgs := sub.waitFor(t, 20*time.Second, "the relay's new state upstream", func(ms []paho.Message) bool {
		for _, m := range ms {
			if m.Topic() == "sites/s1/gw-01/relays/door" && stateOf(m) == true {
				return true
			}
		}
		return false
	})
	if pin.Read() != pgpio.High {
		t.Error("the command did not drive the pin high")
	}
	sets := 0
	for _, m := range msgs {
		if m.Topic() == "sites/s1/gw-01/relays/door/set" {
			sets++
		}
	}
	if sets != 1 {
		t.Errorf("the upstream subscriber saw the command %d times, want once (ours): it looped", sets)
	}
	if st := gw.Status(); st.Bridge.Received != 1 {
		t.Errorf("bridge received %d messages from upstream, want 1", st.Bridge.Received)
	}
}

// TestExternalBrokerDownAtStart: the board's Mosquitto is not running when
// the gateway starts. The gateway runs anyway, keeps trying, and the
// readings meanwhile still go upstream; once Mosquitto starts the gateway
// connects and the readings flow through it, with no gap and no duplicate.
func TestExternalBrokerDownAtStart(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	mosquittotest.Require(t)
	f := pki(t)
	up := upstream(t, f)
	port := mosquittotest.FreePort(t)
	localAddr := fmt.Sprintf("127.0.0.1:%d", port)
	dev := "[[device]]\nname = \"sim1\"\ntype = \"sim\"\nkind = \"rfid\"\ninterval = \"50ms\"\n"

	sub := subscribe(t, f, up.Addr(), "sites/s1/gw-01/readings/#", 1)
	gw, logs := runGateway(t, externalConfig(t, f, localAddr, up.Addr(), readingsOut, dev))
	if gw.Status().Broker.Clients != 0 {
		t.Fatal("connected to a broker that is not running")
	}
	sub.waitFor(t, 20*time.Second, "readings while the local broker is down", func(ms []paho.Message) bool { return len(simSeqs(t, ms)) >= 3 })

	mosquittotest.Start(t, mosquittotest.Options{Port: port})
	waitUntil(t, 20*time.Second, "the gateway to connect and subscribe", func() bool {
		s := gw.Status().Broker
		return s.Clients == 1 && s.Subscriptions >= 1
	})
	lc := localPaho(t, localAddr)
	onBoard := make(chan []byte, 64)
	if tok := lc.Subscribe("readings/sim1", 1, func(_ paho.Client, m paho.Message) {
		select {
		case onBoard <- m.Payload():
		default:
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	var viaBroker uint64
	select {
	case p := <-onBoard:
		var r reading
		if err := json.Unmarshal(p, &r); err != nil || r.Seq == 0 {
			t.Fatalf("reading on the external broker %q: %v", p, err)
		}
		viaBroker = r.Seq
	case <-time.After(20 * time.Second):
		t.Fatalf("no reading on the external broker after it started\n%s", tail(logs.String(), 30))
	}
	msgs := sub.waitFor(t, 20*time.Second, "a reading through the started broker upstream", func(ms []paho.Message) bool {
		seqs := simSeqs(t, ms)
		return len(seqs) > 0 && seqs[len(seqs)-1] >= viaBroker+3
	})
	checkOnceEach(t, simSeqs(t, msgs))
	if !strings.Contains(logs.String(), "cannot connect to the local broker") || !strings.Contains(logs.String(), "connected to the local broker") {
		t.Errorf("the log does not tell the episode:\n%s", tail(logs.String(), 30))
	}
}
