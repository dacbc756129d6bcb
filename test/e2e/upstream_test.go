package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/testenv"
)

// upstreamConfig is a gateway with one sim device publishing every 20 ms at
// the given QoS, bridged under readings/# at the same QoS.
func upstreamConfig(t *testing.T, addresses, protocol string, qos int, tlsBlock string) string {
	return fmt.Sprintf(`
[gateway]
id = "gw-01"
data_dir = %q
http_listen = ""
[broker]
listen = "127.0.0.1:0"
[upstream]
address = %s
protocol = %q
backoff_max = "200ms"
%s
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = %d
remote_prefix = "sites/s1/gw-01/"
[[device]]
name = "sim1"
type = "sim"
interval = "20ms"
qos = %d
`, t.TempDir(), addresses, protocol, tlsBlock, qos, qos)
}

func tlsBlockFor(t *testing.T, f certsFiles) string {
	p := clientPair(t, f, "gw-01")
	return fmt.Sprintf("[upstream.tls]\ncafile = %q\ncertfile = %q\nkeyfile = %q\n", f.CA.Cert, p.Cert, p.Key)
}

// TestMQTT5MaximumQoSDowngrades: an upstream that allows at most QoS 1
// (Mosquitto's max_qos 1, announced in the MQTT 5 CONNACK) gets a QoS 2 rule's
// messages at QoS 1, with a warning in the log, instead of a failing link.
func TestMQTT5MaximumQoSDowngrades(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	f := pki(t)
	up := mosquittotest.Start(t, mosquittotest.Options{CAFile: f.CA.Cert, CertFile: f.Server.Cert, KeyFile: f.Server.Key, Extra: "max_qos 1\n"})
	sub := subscribe(t, f, up.Addr(), "sites/s1/gw-01/readings/#", 2)
	gw, logs := runGateway(t, upstreamConfig(t, fmt.Sprintf("%q", "mqtts://"+up.Addr()), "5", 2, tlsBlockFor(t, f)))
	msgs := sub.waitFor(t, 30*time.Second, "20 readings upstream", func(m []paho.Message) bool { return len(m) >= 20 })
	for i, m := range msgs[:20] {
		r := decode(t, m)
		if r.Seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d (loss or reorder)", i, r.Seq)
		}
		if m.Qos() > 1 {
			t.Fatalf("message %d arrived at QoS %d from a broker that allows 1", i, m.Qos())
		}
	}
	if !strings.Contains(logs.String(), "allows at most this QoS") {
		t.Errorf("no warning about the downgrade in the log:\n%s", tail(logs.String(), 20))
	}
	if st := gw.Status(); st.Bridge.ConnectFailures != 0 || st.Bridge.Connects != 1 {
		t.Errorf("link did not stay up: connects %d, failures %d", st.Bridge.Connects, st.Bridge.ConnectFailures)
	}
}

// TestFailoverToSecondAddress: with two upstream addresses of which the
// first does not answer, the gateway goes on to the second.
func TestFailoverToSecondAddress(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	f := pki(t)
	up := upstream(t, f)
	dead := fmt.Sprintf("127.0.0.1:%d", mosquittotest.FreePort(t))
	addrs := fmt.Sprintf("[%q, %q]", "mqtts://"+dead, "mqtts://"+up.Addr())
	sub := subscribe(t, f, up.Addr(), "sites/s1/gw-01/readings/#", 1)
	gw, _ := runGateway(t, upstreamConfig(t, addrs, "3.1.1", 1, tlsBlockFor(t, f)))
	sub.waitFor(t, 30*time.Second, "readings through the second address", func(m []paho.Message) bool { return len(m) >= 5 })
	st := gw.Status()
	if st.Bridge.Endpoint != up.Addr() || !st.Bridge.LinkUp {
		t.Fatalf("bridge on %q (up %v), want %q", st.Bridge.Endpoint, st.Bridge.LinkUp, up.Addr())
	}
	if st.Bridge.ConnectFailures == 0 || !strings.Contains(st.Bridge.LastError, dead) {
		t.Errorf("the dead first address was not tried first, or its failure not explained: %+v", *st.Bridge)
	}
}
