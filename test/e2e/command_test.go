package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/edgegw/edgegw/internal/testenv"
)

// TestCommandFromUpstreamDrivesRelay: a command published on the upstream
// Mosquitto (mutual TLS) under an "in" rule reaches a gpio_out pin (periph's
// fake: this machine has no GPIO chip), and the relay's new state comes back
// up under the "out" rule. The "out" rule's pattern also matches the
// command topic, so a message that came down and went back up would show
// here: it must not.
func TestCommandFromUpstreamDrivesRelay(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	pin := &gpiotest.Pin{N: "E2E_RELAY", Num: 4242, EdgesChan: make(chan pgpio.Level)}
	if err := gpioreg.Register(pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gpioreg.Unregister(pin.N) })

	f := pki(t)
	up := upstream(t, f)
	cfg := gwConfig(t, f, t.TempDir(), "127.0.0.1:0", up.Addr(), `backoff_max = "500ms"`, topicRule("relays/+/set", "in", 1)+topicRule("relays/#", "out", 1)+`[[device]]
name = "relay"
type = "gpio_out"
topic = "relays/door"
pin = "E2E_RELAY"
initial = "off"
safe_state = "off"
`)

	sub := subscribe(t, f, up.Addr(), "sites/s1/gw-01/relays/#", 1)
	gw, _ := runGateway(t, cfg)
	waitUntil(t, 20*time.Second, "the upstream link", func() bool { s := gw.Status(); return s.Bridge != nil && s.Bridge.LinkUp })
	// The start state ("off", cause start) comes up first.
	sub.waitFor(t, 20*time.Second, "the relay's start state", func(ms []paho.Message) bool { return len(ms) >= 1 })
	if pin.Read() != pgpio.Low {
		t.Fatal("relay not in its safe state at start")
	}

	pub := newPublisher(t, f, up.Addr())
	if tok := pub.Publish("sites/s1/gw-01/relays/door/set", 1, false, `{"state":"on"}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish command: %v", tok.Error())
	}
	msgs := sub.waitFor(t, 20*time.Second, "the relay's new state upstream", func(ms []paho.Message) bool {
		for _, m := range ms {
			if m.Topic() == "sites/s1/gw-01/relays/door" && stateOf(m) == true {
				return true
			}
		}
		return false
	})
	if pin.Read() != pgpio.High {
		t.Fatal("the command did not drive the pin high")
	}
	// The command itself was seen by the subscriber once (from our
	// publisher); a loop would bring it back a second time from the gateway.
	sets := 0
	for _, m := range msgs {
		if m.Topic() == "sites/s1/gw-01/relays/door/set" {
			sets++
		}
	}
	// Give a looped copy the time one round trip takes: wait for one more
	// state change we cause, which is ordered after any echo.
	if tok := pub.Publish("sites/s1/gw-01/relays/door/set", 1, false, "off"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish command: %v", tok.Error())
	}
	msgs = sub.waitFor(t, 20*time.Second, "the relay off again", func(ms []paho.Message) bool {
		last := ms[len(ms)-1]
		return last.Topic() == "sites/s1/gw-01/relays/door" && stateOf(last) == false && len(ms) > 2
	})
	sets = 0
	for _, m := range msgs {
		if m.Topic() == "sites/s1/gw-01/relays/door/set" {
			sets++
		}
	}
	if sets != 2 {
		t.Errorf("the subscriber saw %d command messages, want the 2 we published (a loop sends them back up)", sets)
	}
	if pin.Read() != pgpio.Low {
		t.Error("relay not off after the off command")
	}
	if st := gw.Status(); st.Bridge.Received != 2 {
		t.Errorf("bridge received %d messages from upstream, want 2", st.Bridge.Received)
	}
}

func stateOf(m paho.Message) any {
	var r struct {
		Values map[string]any `json:"values"`
	}
	if json.Unmarshal(m.Payload(), &r) != nil {
		return nil
	}
	return r.Values["state"]
}

// newPublisher connects a paho client with the "sub" certificate.
func newPublisher(t testing.TB, f certsFiles, addr string) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().AddBroker("ssl://" + addr).SetClientID(fmt.Sprintf("pub-%d", time.Now().UnixNano())).
		SetTLSConfig(clientTLS(t, f, "sub")).SetAutoReconnect(true)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}
