package e2e

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/devices/serialtest"
	"github.com/edgegw/edgegw/internal/mosquittotest"
)

// availabilityConfig is a gateway with availability on, one RDM6300 on
// port, mutual TLS upstream with the given keepalive.
func availabilityConfig(t testing.TB, f certsFiles, dataDir, brokerListen, upstreamAddr, keepalive, port, extra string) string {
	return gwConfig(t, f, dataDir, brokerListen, upstreamAddr, fmt.Sprintf(`keepalive = %q
backoff_min = "10ms"
backoff_max = "200ms"`, keepalive), topicRule("readings/#", "out", 1)+fmt.Sprintf(`
[availability]
enabled = true

[[device]]
name = "door"
type = "rdm6300"
port = %q
%s
`, port, extra))
}

// waitPayload waits for a message on topic with payload want among those
// received from index from on, and returns the index after it.
func (r *received) waitPayload(t testing.TB, timeout time.Duration, from int, topic, want string) int {
	t.Helper()
	at := -1
	r.waitFor(t, timeout, fmt.Sprintf("%q on %s", want, topic), func(ms []paho.Message) bool {
		for i := from; i < len(ms); i++ {
			if ms[i].Topic() == topic && string(ms[i].Payload()) == want {
				at = i
				return true
			}
		}
		return false
	})
	return at + 1
}

// TestAvailability is acceptance point 1 of issue 14, on the real binary and
// a real Mosquitto with mutual TLS: the gateway's state upstream is
// "online" (retained) once connected; kill -9 makes the upstream broker
// publish its Last Will "offline" within 1.5 x keepalive; a restart brings
// "online" back; unplugging the RFID reader's serial port (its pty closed)
// turns the device "offline" and plugging it back "online"; a clean stop
// (SIGTERM) publishes "offline" upstream and on the local broker.
func TestAvailability(t *testing.T) {
	const keepalive = 4 * time.Second
	f := pki(t)
	up := upstream(t, f)
	plug := serialtest.NewPlug(t)
	sub := subscribe(t, f, up.Addr(), "sites/s1/gw-01/status/#", 1)
	const gwTopic, doorTopic = "sites/s1/gw-01/status", "sites/s1/gw-01/status/door"

	brokerAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(mosquittotest.FreePort(t)))
	gw := newGwProc(t, availabilityConfig(t, f, t.TempDir(), brokerAddr, up.Addr(), keepalive.String(), plug.Path, ""), brokerAddr)
	gw.start()
	next := sub.waitPayload(t, 20*time.Second, 0, gwTopic, "online")
	sub.waitPayload(t, 20*time.Second, 0, doorTopic, "online")

	local := &received{ch: make(chan struct{}, 1)}
	lc := localClient(brokerAddr, "avail-local", true, nil)
	if tok := lc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local connect: %v", tok.Error())
	}
	// Two filters: the embedded broker (mochi-mqtt) does not send a
	// retained "a/b" to a new "a/b/#" subscription.
	if tok := lc.SubscribeMultiple(map[string]byte{"edgegw/gw-01/status": 1, "edgegw/gw-01/status/+": 1}, func(_ paho.Client, m paho.Message) { local.add(m) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local subscribe: %v", tok.Error())
	}
	local.waitPayload(t, 10*time.Second, 0, "edgegw/gw-01/status", "online")
	local.waitPayload(t, 10*time.Second, 0, "edgegw/gw-01/status/door", "online")
	lc.Disconnect(100)

	// Unplug: the device goes offline, upstream too; plugged back, online.
	mark := len(sub.snapshot())
	plug.Unplug()
	mark = sub.waitPayload(t, 20*time.Second, mark, doorTopic, "offline")
	plug.Replug()
	sub.waitPayload(t, 30*time.Second, mark, doorTopic, "online")

	// kill -9: the upstream broker publishes the Will.
	mark = len(sub.snapshot())
	killed := time.Now()
	gw.kill()
	mark = sub.waitPayload(t, 3*keepalive, mark, gwTopic, "offline")
	if took := time.Since(killed); took > keepalive*3/2 {
		t.Errorf("the Will \"offline\" arrived %s after kill -9; want within 1.5 x keepalive (%s)", took.Round(time.Millisecond), keepalive*3/2)
	} else {
		t.Logf("Will \"offline\" %s after kill -9 (keepalive %s)", took.Round(time.Millisecond), keepalive)
	}
	gw.start()
	mark = sub.waitPayload(t, 20*time.Second, mark, gwTopic, "online")
	_ = next

	// Clean stop: "offline" upstream (DISCONNECT discards a Will, so the
	// gateway publishes it) and on the local broker.
	local = &received{ch: make(chan struct{}, 1)}
	lc = localClient(brokerAddr, "avail-local-2", true, nil)
	if tok := lc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local connect: %v", tok.Error())
	}
	if tok := lc.Subscribe("edgegw/gw-01/status", 1, func(_ paho.Client, m paho.Message) { local.add(m) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local subscribe: %v", tok.Error())
	}
	local.waitPayload(t, 10*time.Second, 0, "edgegw/gw-01/status", "online")
	gw.stop()
	sub.waitPayload(t, 10*time.Second, mark, gwTopic, "offline")
	local.waitPayload(t, 10*time.Second, 1, "edgegw/gw-01/status", "offline")
	lc.Disconnect(100)
}
