package board

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/testenv"
)

// scrape fetches /metrics and parses it with Prometheus's own text parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("/metrics Content-Type %q", ct)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// value returns the sample of family name whose labels include want
// (name=value pairs); it fails if there is none.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	for _, m := range f.Metric {
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	t.Fatalf("no sample of %s with %v", name, want)
	return 0
}

// TestMetricsMove runs the gateway (the real binary) against a real
// Mosquitto over mutual TLS and checks /metrics parses with the Prometheus
// parser and that its counters move: readings published and acked; the
// upstream stopped (link down, backlog on disk, QoS 0 messages dropped from
// the full memory ring); the upstream back (a new connect, the backlog
// drained). edgegw status is checked against the same gateway.
func TestMetricsMove(t *testing.T) {
	testenv.Integration(t, "the built binaries, qemu, dpkg and a real Mosquitto")
	mosquittotest.Require(t)
	bin := binary(t, "amd64")
	f := pki(t)
	port := mosquittotest.FreePort(t)
	up := upstream(t, f, port)
	dir := t.TempDir()
	httpAddr, brokerAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(cfg, []byte(gatewayConfig(f, filepath.Join(dir, "data"), up.Addr(), brokerAddr, httpAddr, "[buffer]\nqos0_max_bytes = \"1KiB\"\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, nil, bin, "run", "-c", cfg)
	waitUntil(t, 20*time.Second, "/readyz 200", func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	// Published and acknowledged.
	m0 := scrape(t, httpAddr)
	for _, name := range []string{"edgegw_outbox_oldest_age_seconds", "edgegw_tls_cert_days_left", "edgegw_broker_clients", "edgegw_device_events_total", "edgegw_clock_synced", "process_resident_memory_bytes"} {
		if _, ok := m0[name]; !ok {
			t.Errorf("no metric %s", name)
		}
	}
	if d := value(t, m0, "edgegw_tls_cert_days_left", "path", f.CA.Cert); d < 3000 {
		t.Errorf("CA days left = %v, want about 10 years", d)
	}
	if v := value(t, m0, "edgegw_outbox_dropped_total", "reason", "full_oldest"); v != 0 {
		t.Errorf("drops before any outage: %v", v)
	}
	waitUntil(t, 20*time.Second, "acked readings", func() bool {
		m := scrape(t, httpAddr)
		return value(t, m, "edgegw_bridge_acked_total") >= 5 && value(t, m, "edgegw_device_readings_total", "device", "sim1") >= 5 &&
			value(t, m, "edgegw_bridge_link_up") == 1 && value(t, m, "edgegw_bridge_connects_total") == 1
	})
	time.Sleep(time.Second) // let the gateway settle to measure its RSS at a steady state
	t.Logf("native amd64: binary %.1f MiB, RSS running (sim at 10/s, link up): %d KiB", fileMiB(bin), rssKiB(p.cmd.Process.Pid))

	// edgegw status against the running gateway.
	out := mustRun(t, 30*time.Second, bin, "status", "-c", cfg)
	for _, want := range []string{"gateway gw-01: running", "upstream: up", "sim1", "certificate " + f.CA.Cert} {
		if !strings.Contains(out, want) {
			t.Errorf("edgegw status lacks %q:\n%s", want, out)
		}
	}

	// Upstream gone: the link goes down, the backlog grows on disk, and QoS 0
	// messages published locally overflow the 1 KiB memory ring.
	up.Stop()
	waitUntil(t, 20*time.Second, "link down", func() bool {
		m := scrape(t, httpAddr)
		return value(t, m, "edgegw_bridge_link_up") == 0 && value(t, m, "edgegw_bridge_link_downs_total") == 1
	})
	local := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + brokerAddr).SetClientID("local-pub"))
	if tok := local.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local connect: %v", tok.Error())
	}
	defer local.Disconnect(100)
	payload := strings.Repeat("x", 200)
	for i := 0; i < 40; i++ {
		if tok := local.Publish(fmt.Sprintf("q0/t%d", i), 0, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("local publish: %v", tok.Error())
		}
	}
	waitUntil(t, 20*time.Second, "QoS 0 drops and a backlog", func() bool {
		m := scrape(t, httpAddr)
		return value(t, m, "edgegw_bridge_qos0_dropped_total") > 0 && value(t, m, "edgegw_outbox_messages") >= 3 &&
			value(t, m, "edgegw_bridge_connect_failures_total") >= 1
	})
	m1 := scrape(t, httpAddr)
	if v := value(t, m1, "edgegw_broker_clients"); v < 1 {
		t.Errorf("broker clients = %v with a local client connected", v)
	}
	out, _ = runCmd(t, 30*time.Second, bin, "status", "--http", httpAddr)
	if !strings.Contains(out, "upstream: DOWN") || !strings.Contains(out, "backlog:") {
		t.Errorf("edgegw status during the outage:\n%s", out)
	}

	// Upstream back on the same port: a second connect, the backlog drains.
	acked := value(t, m1, "edgegw_bridge_acked_total")
	upstream(t, f, port)
	waitUntil(t, 30*time.Second, "reconnect and drain", func() bool {
		m := scrape(t, httpAddr)
		return value(t, m, "edgegw_bridge_link_up") == 1 && value(t, m, "edgegw_bridge_connects_total") == 2 &&
			value(t, m, "edgegw_outbox_messages") < 3 && value(t, m, "edgegw_bridge_acked_total") > acked+3
	})
	if err := p.stop(t); err != nil {
		t.Errorf("edgegw exited with %v", err)
	}
}
