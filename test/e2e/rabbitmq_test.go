package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/netproxy"
	"github.com/edgegw/edgegw/internal/rabbitmqtest"
)

// TestRabbitMQUpstream is acceptance 6 of the cloud-limits issue: RabbitMQ's
// MQTT plugin (3.1.1 only, certificate login by CN) as the upstream, with
// mutual TLS. One broker serves every case (it takes a while to start).
func TestRabbitMQUpstream(t *testing.T) {
	rabbitmqtest.Require(t)
	f, err := certs.Init(certs.Options{Dir: filepath.Join(t.TempDir(), "pki"), ServerNames: []string{"localhost", "127.0.0.1"}, ClientNames: []string{"gw-01", "sub", "gw-99"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rq := rabbitmqtest.Start(t, rabbitmqtest.Options{CAFile: f.CA.Cert, CertFile: f.Server.Cert, KeyFile: f.Server.Key, Users: []string{"gw-01", "sub"}})
	t.Logf("rabbitmq up in %s", time.Since(start).Round(time.Millisecond))

	t.Run("QoS 1 through an outage and a kill -9 loses nothing", func(t *testing.T) {
		const total = 3000
		px, err := netproxy.New(rq.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer px.Close()
		sub := subscribeSeqs(t, f, rq.Addr(), 1)
		brokerAddr := fmt.Sprintf("127.0.0.1:%d", mosquittotest.FreePort(t))
		gw := newGwProc(t, storeConfig(t, f, t.TempDir(), brokerAddr, px.Addr(), 1, ""), brokerAddr)
		gw.start()
		pub := localClient(brokerAddr, "pub-rmq", true, nil)
		if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("local publisher connect: %v", tok.Error())
		}
		want := map[string][]uint64{}
		// The first third with the link up, the rest through a cut, then
		// kill -9 with a backlog, restart, restore the link.
		done := make(chan error, 1)
		go func() { done <- publishPaced(t.Context(), pub, total, 3000, 1, want) }()
		waitUntil(t, 30*time.Second, "a third to arrive", func() bool {
			n := 0
			for _, s := range sub.snapshot() {
				n += len(s)
			}
			return n >= total/3
		})
		px.Cut()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		pub.Disconnect(100)
		gw.kill()
		gw.start()
		px.Restore()
		if !sub.waitFor(90*time.Second, func(got map[string][]uint64) bool { return haveAll(got, want) }) {
			t.Errorf("not everything arrived within 90s")
		}
		sub.mu.Lock()
		bad := sub.bad
		sub.mu.Unlock()
		checkSeqs(t, sub.snapshot(), bad, acceptance{want: want})
		gw.stop()
	})

	t.Run("QoS 2 rules: the broker's downgrades (PUBACK to QoS 2, SUBACK granting 1) are detected and logged once", func(t *testing.T) {
		sub := subscribeSeqs(t, f, rq.Addr(), 2)
		inRule := "[[upstream.topic]]\npattern = \"cmd/#\"\ndirection = \"in\"\nqos = 2\n"
		gw, logs := runGateway(t, storeConfig(t, f, t.TempDir(), "127.0.0.1:0", rq.Addr(), 2, inRule))
		pub := localClient(gw.BrokerAddr(), "pub-rmq2", true, nil)
		if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("local publisher connect: %v", tok.Error())
		}
		defer pub.Disconnect(100)
		want := map[string][]uint64{}
		if err := publishPaced(t.Context(), pub, 300, 1000, 2, want); err != nil {
			t.Fatal(err)
		}
		if !sub.waitFor(30*time.Second, func(got map[string][]uint64) bool { return haveAll(got, want) }) {
			t.Fatalf("not everything arrived")
		}
		const warning = "answered a QoS 2 PUBLISH with PUBACK"
		if n := strings.Count(logs.String(), warning); n != 1 {
			t.Errorf("the downgrade is logged %d times, want once:\n%s", n, tail(logs.String(), 20))
		}
		if !strings.Contains(logs.String(), "granted a lower QoS") {
			t.Errorf("the SUBACK granting QoS 1 to a QoS 2 in rule is not logged:\n%s", tail(logs.String(), 20))
		}
		if st := gw.Status().Bridge; !st.QoS2Downgraded {
			t.Errorf("status does not show the downgrade: %+v", st)
		}
	})

	t.Run("protocol 5 is explained as an MQTT 5 refusal, by the gateway and by tls-check", func(t *testing.T) {
		cfg := strings.Replace(storeConfig(t, f, t.TempDir(), "127.0.0.1:0", rq.Addr(), 1, ""), "keepalive = \"1s\"", "keepalive = \"1s\"\nprotocol = \"5\"", 1)
		gw, _ := runGateway(t, cfg)
		waitUntil(t, 30*time.Second, "a failed attempt", func() bool { return gw.Status().Bridge.ConnectFailures > 0 })
		last := gw.Status().Bridge.LastError
		if !strings.Contains(last, "MQTT 5") || !strings.Contains(last, `protocol = "3.1.1"`) || strings.Contains(last, "plain MQTT") {
			t.Errorf("the cause is %q", last)
		}
		t.Logf("gateway: %s", last)
		out, code := tlsCheckRun(t, cfg)
		t.Logf("tls-check:\n%s", out)
		if code == 0 || !strings.Contains(out, "MQTT 5 CONNECT") || !strings.Contains(out, "answers an MQTT 3.1.1 CONNECT") {
			t.Errorf("tls-check with protocol 5 (exit %d):\n%s", code, out)
		}
		out, code = tlsCheckRun(t, strings.Replace(cfg, `protocol = "5"`, `protocol = "3.1.1"`, 1))
		if code != 0 {
			t.Errorf("tls-check with protocol 3.1.1 (exit %d):\n%s", code, out)
		}
	})

	t.Run("a certificate CN with no RabbitMQ user gets no password hint", func(t *testing.T) {
		cfg := storeConfig(t, f, t.TempDir(), "127.0.0.1:0", rq.Addr(), 1, "")
		gw99 := clientPair(t, f, "gw-99")
		gw01 := clientPair(t, f, "gw-01")
		cfg = strings.ReplaceAll(strings.ReplaceAll(cfg, gw01.Cert, gw99.Cert), gw01.Key, gw99.Key)
		out, code := tlsCheckRun(t, cfg)
		t.Logf("tls-check:\n%s", out)
		if code == 0 || !strings.Contains(out, `"gw-99"`) || !strings.Contains(out, "rabbitmqctl add_user gw-99") || strings.Contains(out, "mosquitto_passwd") {
			t.Errorf("tls-check with an unknown CN (exit %d):\n%s", code, out)
		}
	})
}

// tlsCheckRun runs `edgegw tls-check -c` on cfgText.
func tlsCheckRun(t *testing.T, cfgText string) (string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gw.toml")
	writeFileT(t, path, cfgText)
	var out bytes.Buffer
	cmd := exec.Command(buildBinary(t), "tls-check", "-c", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

func writeFileT(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
