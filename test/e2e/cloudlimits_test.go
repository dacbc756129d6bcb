package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/netproxy"
	"github.com/edgegw/edgegw/internal/syncbuf"
)

// cloudConfig is storeConfig speaking MQTT 5 (or protocol), with extra
// lines in [upstream] and a rule for readings/# at ruleQoS.
func cloudConfig(t testing.TB, f certs.Files, dataDir, brokerListen, upstreamAddr, protocol string, ruleQoS int, upstreamExtra string) string {
	return gwConfig(t, f, dataDir, brokerListen, upstreamAddr, fmt.Sprintf(`protocol = %q
keepalive = "2s"
backoff_min = "50ms"
backoff_max = "500ms"
%s`, protocol, upstreamExtra), topicRule("readings/#", "out", ruleQoS))
}

// publishMixed publishes n messages on readings/a at QoS 1 and n on
// readings/b at QoS 2, interleaved, and waits for every local
// acknowledgement.
func publishMixed(t testing.TB, c paho.Client, n int) map[string][]uint64 {
	t.Helper()
	want := map[string][]uint64{}
	var toks []paho.Token
	for i := 1; i <= n; i++ {
		for _, tq := range []struct {
			topic string
			qos   byte
		}{{"readings/a", 1}, {"readings/b", 2}} {
			want[tq.topic] = append(want[tq.topic], uint64(i))
			toks = append(toks, c.Publish(tq.topic, tq.qos, false, payloadOf(tq.topic, uint64(i))))
		}
		if len(toks) >= 400 {
			for _, tok := range toks {
				if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
					t.Fatalf("local publish: %v", tok.Error())
				}
			}
			toks = toks[:0]
		}
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("local publish: %v", tok.Error())
		}
	}
	return want
}

// TestMQTT5ReceiveMaximum is acceptance 1 of the cloud-limits issue: an
// upstream Mosquitto as MQTT 5 with max_inflight_messages 20 (announced as
// Receive Maximum 20); 3,000 QoS 1 and 3,000 QoS 2 messages queued during a
// cut all arrive, in order, exactly once, with at most 5 connects and no
// protocol-error disconnect in the broker's log. Before, the gateway kept
// 1,024 in flight, the broker refused the 21st and dropped the link, and
// the gateway reconnected hundreds of times.
func TestMQTT5ReceiveMaximum(t *testing.T) {
	const n = 3000
	f := pki(t)
	up := mosquittotest.Start(t, mosquittotest.Options{CAFile: f.CA.Cert, CertFile: f.Server.Cert, KeyFile: f.Server.Key, Extra: "max_inflight_messages 20\n"})
	px, err := netproxy.New(up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	sub := subscribeV5(t, f, up.Addr())
	gw, logs := runGateway(t, cloudConfig(t, f, t.TempDir(), "127.0.0.1:0", px.Addr(), "5", 2, ""))
	waitUntil(t, 20*time.Second, "the upstream link", func() bool { return gw.Status().Bridge.LinkUp })
	if w := gw.Status().Bridge.Window; w != 20 {
		t.Errorf("window %d, want 20 (the broker's Receive Maximum)", w)
	}

	px.Cut()
	waitUntil(t, 20*time.Second, "the link to go down", func() bool { return !gw.Status().Bridge.LinkUp })
	pub := localClient(gw.BrokerAddr(), "pub-rm", true, nil)
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local publisher connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	want := publishMixed(t, pub, n)
	if got := gw.Status().Bridge.Outbox.Messages; got != 2*n {
		t.Fatalf("backlog %d after the cut, want %d", got, 2*n)
	}
	px.Restore()
	start := time.Now()
	ok := sub.waitFor(120*time.Second, func(got map[string][]uint64) bool { return haveAll(got, want) })
	took := time.Since(start)
	sub.mu.Lock()
	bad := sub.bad
	sub.mu.Unlock()
	checkSeqs(t, sub.snapshot(), bad, acceptance{want: want, exactlyOnce: true, consecutive: true})
	if !ok {
		t.Fatalf("not everything arrived within 120s")
	}
	st := gw.Status().Bridge
	t.Logf("%d messages drained in %s after the cut; connects %d, flaps %d, window %d, link downs %d", 2*n, took.Round(time.Millisecond), st.Connects, st.Flaps, st.Window, st.LinkDowns)
	if st.Connects > 5 {
		t.Errorf("%d connects, want at most 5", st.Connects)
	}
	if st.DeadLettered != 0 || st.TransientRefusals != 0 {
		t.Errorf("the broker refused messages: %d dead letters, %d transient refusals", st.DeadLettered, st.TransientRefusals)
	}
	if m := regexp.MustCompile(`(?i)edgegw-gw-01[^\n]*protocol error`).FindString(up.Log()); m != "" {
		t.Errorf("the broker logged a protocol error: %s", m)
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if (strings.Contains(l, "link down") || strings.Contains(l, "flapped")) && strings.Contains(l, "plain MQTT") {
			t.Errorf("a link that was up is blamed on plain MQTT: %s", l)
		}
	}
}

// subscribeV5 records what arrives under remotePrefix with mosquitto_sub
// speaking MQTT 5 (persistent session, QoS 2). Mosquitto bounds what it
// has in flight to an MQTT 3.1.1 subscriber by max_inflight_messages and,
// by its own documentation, then keeps order only with a limit of 1; to an
// MQTT 5 subscriber it uses the subscriber's Receive Maximum, so this
// subscriber sees the order the broker received.
func subscribeV5(t testing.TB, f certs.Files, addr string) *seqSub {
	t.Helper()
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Fatal("mosquitto_sub is not installed: run 'make deps' as root, or apt-get install mosquitto-clients")
	}
	host, port, _ := net.SplitHostPort(addr)
	p := clientPair(t, f, "sub")
	s := &seqSub{got: map[string][]uint64{}, mark: map[string]bool{}, ch: make(chan struct{}, 1)}
	cmd := exec.Command("mosquitto_sub", "-V", "mqttv5", "-h", host, "-p", port, "--cafile", f.CA.Cert, "--cert", p.Cert, "--key", p.Key,
		"-i", "sub5-"+strings.ReplaceAll(t.Name(), "/", "-"), "-c", "-x", "600", "-D", "CONNECT", "receive-maximum", "65535", "-q", "2", "-t", remotePrefix+"#", "-v")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb syncbuf.Buffer
	cmd.Stderr = &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			topic, payload, _ := strings.Cut(sc.Text(), " ")
			s.record(topic, []byte(payload))
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto_sub stderr: %s", errb.String())
		}
	})
	// Subscribed once a marker comes back.
	mk := paho.NewClient(paho.NewClientOptions().AddBroker("ssl://" + addr).SetClientID("marker-" + strings.ReplaceAll(t.Name(), "/", "-")).SetTLSConfig(clientTLS(t, f, "sub")))
	if tok := mk.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("marker client: %v", tok.Error())
	}
	defer mk.Disconnect(100)
	deadline := time.Now().Add(10 * time.Second)
	for {
		name := fmt.Sprintf("marker/%d", time.Now().UnixNano())
		mk.Publish(remotePrefix+name, 1, false, "marker").WaitTimeout(5 * time.Second)
		if s.waitFor(300*time.Millisecond, func(map[string][]uint64) bool { s.mu.Lock(); defer s.mu.Unlock(); return s.mark[name] }) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto_sub did not subscribe within 10s: %s", errb.String())
		}
	}
}
