package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/syncbuf"
	"github.com/edgegw/edgegw/internal/testenv"
)

// TestExternalBrokerKill9 runs the real binary on an external local broker
// and kills it with SIGKILL several times while a program on the board
// streams numbered messages into that broker. The broker keeps the
// gateway's session; every message it acknowledged to the publisher must
// arrive upstream (a message the gateway took but had not made durable is
// still unacknowledged, so the broker delivers it again to the next life).
// For QoS 2 the duplicates are counted too.
func TestExternalBrokerKill9(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) { externalKill9(t, qos) })
	}
}

func externalKill9(t *testing.T, qos byte) {
	const n, kills = 3000, 5
	bin := buildBinary(t)
	f := pki(t)
	up := upstream(t, f)
	local := mosquittotest.Start(t, mosquittotest.Options{})
	rules := fmt.Sprintf("[[upstream.topic]]\npattern = \"load/#\"\ndirection = \"out\"\nqos = %d\nremote_prefix = \"sites/s1/gw-01/\"\n", qos)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", mosquittotest.FreePort(t))
	cfg := strings.Replace(externalConfig(t, f, local.Addr(), up.Addr(), rules, ""), `http_listen = ""`, fmt.Sprintf("http_listen = %q", httpAddr), 1)
	cfgPath := filepath.Join(t.TempDir(), "gateway.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, f, up.Addr(), "sites/s1/gw-01/load/#", qos)

	var proc *exec.Cmd
	var out syncbuf.Buffer
	start := func() {
		proc = exec.Command(bin, "run", "-c", cfgPath)
		proc.Stdout, proc.Stderr = &out, &out
		proc.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := proc.Start(); err != nil {
			t.Fatal(err)
		}
	}
	kill := func() {
		_ = proc.Process.Kill()
		_ = proc.Wait()
	}
	start()
	t.Cleanup(func() {
		kill()
		if t.Failed() {
			t.Logf("gateway output:\n%s", tail(out.String(), 40))
		}
	})

	// The first life creates the session; the publisher starts once the
	// gateway is subscribed, so every message is queued for it.
	connected := func() int {
		return strings.Count(local.Log(), "as edgegw-gw-01-local")
	}
	waitUntil(t, 20*time.Second, "the gateway on the local broker", func() bool { return connected() >= 1 })
	pubDone := make(chan error, 1)
	pub := localPaho(t, local.Addr())
	// The gateway's CONNECT shows in the broker's log before its SUBSCRIBE
	// takes effect, and a probe published in between reaches nobody: send
	// one every half second until one arrives upstream.
	probeDeadline := time.Now().Add(20 * time.Second)
	for i := 0; len(sub.snapshot()) == 0; i++ {
		if time.Now().After(probeDeadline) {
			t.Fatalf("no probe arrived upstream within 20s (%d sent): the gateway is not subscribed on the local broker", i)
		}
		probe := fmt.Sprintf("probe-%d", time.Now().UnixNano())
		if tok := pub.Publish("load/probe", qos, false, probe); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		sub.waitUpTo(500*time.Millisecond, func(ms []paho.Message) bool { return len(ms) >= 1 })
	}
	go func() {
		for i := 0; i < n; i++ {
			tok := pub.Publish("load/x", qos, false, strconv.Itoa(i))
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				pubDone <- fmt.Errorf("publish %d: %v", i, tok.Error())
				return
			}
		}
		pubDone <- nil
	}()

	// Kill at spread points of the stream, restarting at once.
	for k := 1; k <= kills; k++ {
		sub.waitFor(t, 60*time.Second, fmt.Sprintf("%d messages before kill %d", k*n/(kills+2), k), func(ms []paho.Message) bool { return len(ms) >= k*n/(kills+2) })
		kill()
		start()
	}
	select {
	case err := <-pubDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the publisher did not finish within 60s")
	}
	msgs := sub.waitFor(t, 60*time.Second, fmt.Sprintf("all %d messages upstream after %d kills", n, kills), func(ms []paho.Message) bool {
		seen := map[string]bool{}
		for _, m := range ms {
			if m.Topic() == "sites/s1/gw-01/load/x" {
				seen[string(m.Payload())] = true
			}
		}
		return len(seen) == n
	})
	dups := 0
	seen := map[string]bool{}
	for _, m := range msgs {
		if m.Topic() != "sites/s1/gw-01/load/x" {
			continue
		}
		if seen[string(m.Payload())] {
			dups++
		}
		seen[string(m.Payload())] = true
	}
	// The last life's count of QoS 2 resends it recognised as stored.
	avoided := -1.0
	if resp, err := http.Get("http://" + httpAddr + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(l, "edgegw_bridge_duplicates_avoided_total "); ok {
				avoided, _ = strconv.ParseFloat(v, 64)
			}
		}
	}
	t.Logf("QoS %d: %d messages, %d kills, %d gateway connections to the local broker, %d duplicates upstream, %v resends recognised by the last life", qos, n, kills, connected(), dups, avoided)
	if qos == 2 && dups != 0 {
		t.Errorf("QoS 2: %d duplicates upstream, want none", dups)
	}
}
