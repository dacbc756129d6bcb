package e2e

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/internal/mosquittotest"
)

// hostileConfig runs the real binary with a simulated RFID reader on
// readings/door (every 100 ms), an out rule for readings/#, an in rule
// bringing cmd/# down from upstream, the HTTP endpoint for /metrics, and
// brokerExtra appended to [broker].
func hostileConfig(t testing.TB, f certsFiles, brokerAddr, httpAddr, upAddr, brokerExtra string) string {
	gw := clientPair(t, f, "gw-01")
	return fmt.Sprintf(`
[gateway]
id = "gw-01"
data_dir = %q
http_listen = %q

[broker]
listen = %q
%s

[upstream]
address = "mqtts://%s"
keepalive = "2s"
backoff_min = "10ms"
backoff_max = "200ms"

[upstream.tls]
cafile = %q
certfile = %q
keyfile = %q

[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = 1
remote_prefix = "sites/s1/gw-01/"

[[upstream.topic]]
pattern = "cmd/#"
direction = "in"
qos = 1
remote_prefix = "sites/s1/gw-01/"

[[device]]
name = "door"
type = "sim"
kind = "rfid"
interval = "100ms"
`, t.TempDir(), httpAddr, brokerAddr, brokerExtra, upAddr, f.CA.Cert, gw.Cert, gw.Key)
}

func freeAddr(t testing.TB) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(mosquittotest.FreePort(t)))
}

// TestStalledSubscriberCostsOnlyItself: a raw client subscribes to '#' at
// QoS 1 with keepalive 0 and never reads again. While 1 KiB messages flood
// the broker, every other publisher keeps getting its PUBACKs, device
// readings keep reaching upstream, a command from upstream still reaches a
// local subscriber, the stalled client is disconnected and counted, and
// SIGTERM stops the gateway.
func TestStalledSubscriberCostsOnlyItself(t *testing.T) {
	f := pki(t)
	up := upstream(t, f)
	brokerAddr, httpAddr := freeAddr(t), freeAddr(t)
	gw := newGwProc(t, hostileConfig(t, f, brokerAddr, httpAddr, up.Addr(), `write_timeout = "2s"
client_queue = "256KiB"`), brokerAddr)
	ups := subscribe(t, f, up.Addr(), "sites/s1/gw-01/readings/#", 1)
	gw.start()
	ups.waitFor(t, 15*time.Second, "a first reading upstream", func(ms []paho.Message) bool { return len(ms) > 0 })

	stalled := rawMQTT(t, brokerAddr, "stalled")
	if _, err := stalled.Write(subscribePacket("#", 1)); err != nil {
		t.Fatal(err)
	}
	// From here on the stalled client reads nothing.

	local := localClient(brokerAddr, "flood", true, nil)
	if tok := local.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("local publisher connect: %v", tok.Error())
	}
	defer local.Disconnect(100)
	cmds := make(chan paho.Message, 16)
	listener := localClient(brokerAddr, "cmd-listener", true, nil)
	if tok := listener.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("local subscriber connect: %v", tok.Error())
	}
	defer listener.Disconnect(100)
	if tok := listener.Subscribe("cmd/#", 1, func(_ paho.Client, m paho.Message) { cmds <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("local subscribe: %v", tok.Error())
	}

	payload := bytes.Repeat([]byte("x"), 1024)
	const total = 20000
	type sent struct {
		tok paho.Token
		i   int
	}
	window := make(chan sent, 200)
	errc := make(chan error, 1)
	go func() {
		var err error
		for s := range window {
			if err == nil && (!s.tok.WaitTimeout(10*time.Second) || s.tok.Error() != nil) {
				err = fmt.Errorf("message %d of %d: no PUBACK within 10s (%v)", s.i, total, s.tok.Error())
			}
		}
		errc <- err
	}()
	start := time.Now()
	for i := range total {
		window <- sent{local.Publish("load/x", 1, false, payload), i}
	}
	close(window)
	if err := <-errc; err != nil {
		t.Fatalf("a stalled subscriber held up another publisher: %v", err)
	}
	t.Logf("%d QoS 1 messages of 1 KiB acknowledged in %s with a stalled subscriber on '#'", total, time.Since(start).Round(time.Millisecond))

	if !closedWithin(stalled, 10*time.Second) {
		t.Fatal("the stalled client was not disconnected")
	}
	if n := metric(t, httpAddr, `edgegw_broker_clients_refused_total{reason="slow_consumer"}`); n != 1 {
		t.Errorf("slow_consumer counter = %v, want 1", n)
	}
	if !regexp.MustCompile(`slow client disconnected.* client=stalled `).MatchString(gw.logs.String()) {
		t.Error("no log line names the slow client")
	}

	// Device readings still flow up, and commands still come down.
	before := len(ups.snapshot())
	ups.waitFor(t, 10*time.Second, "device readings after the flood", func(ms []paho.Message) bool { return len(ms) >= before+5 })
	upPub := newPublisher(t, f, up.Addr())
	if tok := upPub.Publish("sites/s1/gw-01/cmd/relay", 1, false, "on"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("upstream publish: %v", tok.Error())
	}
	select {
	case m := <-cmds:
		if m.Topic() != "cmd/relay" || string(m.Payload()) != "on" {
			t.Errorf("local subscriber got %s %q, want cmd/relay \"on\"", m.Topic(), m.Payload())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a message from upstream did not reach the local subscriber")
	}
	gw.stop()
}

// TestUnauthenticatedPeersAreBounded attacks the real binary before any
// authentication: more sockets than max_connections, sockets that never send
// CONNECT, sixteen 5-byte CONNECT headers announcing 256 MB each, and a
// PUBLISH announcing 50 MB. Each is refused, counted and logged a bounded
// number of times, and resident memory stays within a few MiB of idle.
func TestUnauthenticatedPeersAreBounded(t *testing.T) {
	f := pki(t)
	up := upstream(t, f)
	brokerAddr, httpAddr := freeAddr(t), freeAddr(t)
	gw := newGwProc(t, hostileConfig(t, f, brokerAddr, httpAddr, up.Addr(), `max_connections = 20
connect_timeout = "2s"`), brokerAddr)
	gw.start()
	pid := gw.cmd.Process.Pid
	// The HTTP endpoint starts after the broker's listener (lifecycle step
	// "ops"): wait for it before reading metrics.
	waitUntil(t, 5*time.Second, "the HTTP endpoint to listen", func() bool {
		c, err := net.DialTimeout("tcp", httpAddr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	waitUntil(t, 5*time.Second, "the start-up probe connection to go", func() bool {
		return metric(t, httpAddr, "edgegw_broker_connections") == 0
	})
	base := vmRSS(t, pid)
	refused := func(reason string) float64 {
		return metric(t, httpAddr, `edgegw_broker_clients_refused_total{reason="`+reason+`"}`)
	}
	// Bound on resident memory over idle for the whole attack: a few
	// connections' buffers and the garbage of refused packets.
	const margin = 24 << 20
	checkRSS := func(when string) {
		t.Helper()
		if rss := vmRSS(t, pid); rss > base+margin {
			t.Errorf("%s: VmRSS %d MiB, idle was %d MiB (allowed +%d MiB)", when, rss>>20, base>>20, margin>>20)
		} else {
			t.Logf("%s: VmRSS %.1f MiB (idle %.1f MiB)", when, float64(rss)/(1<<20), float64(base)/(1<<20))
		}
	}

	// Too many connections: the 21st to 25th are closed at once.
	var idle []net.Conn
	for range 20 {
		idle = append(idle, dialSmall(t, brokerAddr))
	}
	waitUntil(t, 5*time.Second, "20 connections admitted", func() bool {
		return metric(t, httpAddr, "edgegw_broker_connections") == 20
	})
	for i := range 5 {
		c := dialSmall(t, brokerAddr)
		if !closedWithin(c, time.Second) {
			t.Errorf("connection %d over max_connections was not closed at once", 21+i)
		}
	}
	if n := refused("max_connections"); n != 5 {
		t.Errorf("max_connections counter = %v, want 5", n)
	}
	// Sockets that never send CONNECT are closed after connect_timeout.
	for i, c := range idle {
		if !closedWithin(c, 5*time.Second) {
			t.Errorf("idle socket %d still open 5s after a 2s connect_timeout", i)
		}
	}
	if n := refused("connect_timeout"); n != 20 {
		t.Errorf("connect_timeout counter = %v, want 20", n)
	}
	checkRSS("after 25 idle sockets")

	// Sixteen CONNECT fixed headers announcing 256 MB (the most MQTT can say).
	var big []net.Conn
	for range 16 {
		c := dialSmall(t, brokerAddr)
		if _, err := c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}); err != nil {
			t.Fatal(err)
		}
		big = append(big, c)
	}
	for i, c := range big {
		if !closedWithin(c, 5*time.Second) {
			t.Errorf("oversized CONNECT %d: connection not closed", i)
		}
	}
	if n := refused("packet_too_large"); n != 16 {
		t.Errorf("packet_too_large counter = %v, want 16", n)
	}
	checkRSS("after 16 CONNECT headers of 256 MB")

	// A 50 MB PUBLISH from a connected client, body and all.
	c := rawMQTT(t, brokerAddr, "big-publisher")
	hdr := append([]byte{0x30}, mqttLen(50<<20)...)
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		body := append(append([]byte(nil), hdr...), mqttStr("readings/door")...)
		chunk := bytes.Repeat([]byte("z"), 1<<20)
		if _, err := c.Write(body); err != nil {
			return
		}
		for range 50 {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	if !closedWithin(c, 10*time.Second) {
		t.Error("50 MB PUBLISH: connection not closed")
	}
	if n := refused("packet_too_large"); n != 17 {
		t.Errorf("packet_too_large counter = %v, want 17", n)
	}
	checkRSS("after a 50 MB PUBLISH")

	logs := gw.logs.String()
	for _, line := range []string{"no CONNECT within", "larger than [broker] max_packet_size", "too many connections"} {
		if n := strings.Count(logs, line); n < 1 || n > 5 {
			t.Errorf("%q logged %d times, want 1 to 5 (rate-limited)", line, n)
		}
	}
	// The broker still serves: a well-behaved client connects.
	ok := localClient(brokerAddr, "after-attack", true, nil)
	if tok := ok.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("a client after the attack cannot connect: %v", tok.Error())
	}
	ok.Disconnect(100)
	gw.stop()
}

// TestForgedReadingAndCommandRefused: with the default protect_topics, a
// local client cannot publish on a device's reading topic (it would go
// upstream as the device's reading) or on the local side of an "in" rule
// (a command only upstream may give). Both are refused and counted; the
// device's own readings and upstream's commands still pass.
func TestForgedReadingAndCommandRefused(t *testing.T) {
	f := pki(t)
	up := upstream(t, f)
	brokerAddr, httpAddr := freeAddr(t), freeAddr(t)
	gw := newGwProc(t, hostileConfig(t, f, brokerAddr, httpAddr, up.Addr(), ""), brokerAddr)
	ups := subscribe(t, f, up.Addr(), "sites/s1/gw-01/readings/#", 1)
	gw.start()
	// Readings go up only once the bridge has subscribed its "in" rules.
	ups.waitFor(t, 15*time.Second, "a first reading upstream", func(ms []paho.Message) bool { return len(ms) > 0 })
	cmds := make(chan paho.Message, 16)
	listener := localClient(brokerAddr, "cmd-listener", true, nil)
	if tok := listener.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("local subscriber connect: %v", tok.Error())
	}
	defer listener.Disconnect(100)
	if tok := listener.Subscribe("cmd/#", 1, func(_ paho.Client, m paho.Message) { cmds <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("local subscribe: %v", tok.Error())
	}
	for i, topic := range []string{"readings/door", "cmd/relay"} {
		c := localClient(brokerAddr, fmt.Sprintf("forger-%d", i), true, nil)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("forger connect: %v", tok.Error())
		}
		c.Publish(topic, 1, false, "forged").WaitTimeout(2 * time.Second) // refused: MQTT 3.1.1 disconnects
		c.Disconnect(50)
	}
	waitUntil(t, 10*time.Second, "both forgeries counted", func() bool {
		return metric(t, httpAddr, `edgegw_broker_clients_refused_total{reason="forged_reading"}`) == 1 &&
			metric(t, httpAddr, `edgegw_broker_clients_refused_total{reason="forged_command"}`) == 1
	})
	// Commands from upstream still come down, and the device still reports.
	upPub := newPublisher(t, f, up.Addr())
	if tok := upPub.Publish("sites/s1/gw-01/cmd/relay", 1, false, "from-upstream"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("upstream publish: %v", tok.Error())
	}
	select {
	case m := <-cmds:
		if string(m.Payload()) != "from-upstream" {
			t.Fatalf("local subscriber got %q first, want the command from upstream", m.Payload())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command from upstream did not arrive")
	}
	before := len(ups.snapshot())
	msgs := ups.waitFor(t, 10*time.Second, "device readings", func(ms []paho.Message) bool { return len(ms) >= before+3 })
	for _, m := range msgs {
		if string(m.Payload()) == "forged" {
			t.Fatal("the forged reading went upstream")
		}
	}
	gw.stop()
}
