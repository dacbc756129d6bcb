package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgegw/edgegw/gateway"
)

func TestStatusCmd(t *testing.T) {
	up := gateway.StatusDoc{Gateway: "gw-01", Ready: true, UptimeSeconds: 3725, ClockSynced: true,
		Devices: []gateway.DeviceDoc{{Name: "door", Type: "rdm6300", Up: true, Readings: 42}},
		Upstream: &gateway.UpstreamDoc{LinkUp: true, Endpoint: "broker:8883", Connects: 1, BacklogMessages: 3, InMemory: 3, MemoryAcked: 9000,
			ToDisk: map[string]uint64{"slow_ack": 2, "link_down": 0}},
		Certificates: []gateway.CertDoc{{Path: "/etc/edgegw/client.crt", DaysLeft: 12}}}
	down := up
	down.Upstream = &gateway.UpstreamDoc{Endpoint: "broker:8883", LastError: "the server's certificate is not trusted", BacklogMessages: 1200,
		Dropped: map[string]uint64{"full_oldest": 7, "expired": 0}, ToDisk: map[string]uint64{"link_down": 1200}}
	refusing := up
	refusing.Upstream = &gateway.UpstreamDoc{LinkUp: true, Endpoint: "broker:8883", Connects: 4, Window: 20, Flaps: 3, DeadLetters: 2, DeadLetterDropped: 1, QoS2Downgraded: true}
	stuck := up
	stuck.StuckLoops = []string{"device door"}
	stuck.ClockSynced = false
	cases := []struct {
		name     string
		doc      gateway.StatusDoc
		code     int
		want     []string
		wantExit int
	}{
		{"all well", up, 200, []string{"gateway gw-01: running for 1h2m5s", "upstream: up, broker:8883", "door", "readings 42", "12 days left  <- renew soon",
			"memory: 3 waiting for upstream, 9000 acked from memory (never written); written to disk: slow_ack 2\n"}, exitOK},
		{"link down with drops", down, 200, []string{"upstream: DOWN, broker:8883: the server's certificate is not trusted", "backlog: 1200 messages", "dropped: full_oldest 7",
			"written to disk: link_down 1200"}, exitOK},
		{"flaps, dead letters, no QoS 2", refusing, 200, []string{"in flight 0 of 20", "flaps: 3", "dead letters: 2 held", "1 DROPPED", "edgegw deadletter list", "QoS 2 rules are delivered at least once"}, exitOK},
		{"stuck loop, clock unsynced", stuck, 200, []string{"STUCK: device door", "clock: NOT synchronised"}, exitFailure},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/status" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(c.code)
				json.NewEncoder(w).Encode(c.doc)
			}))
			defer srv.Close()
			var out, errb bytes.Buffer
			code := run([]string{"status", "--http", strings.TrimPrefix(srv.URL, "http://")}, &out, &errb)
			if code != c.wantExit {
				t.Errorf("exit %d, want %d; stderr %s", code, c.wantExit, errb.String())
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if strings.Contains(out.String(), "expired 0") {
				t.Errorf("zero drop counts are noise:\n%s", out.String())
			}
		})
	}

	// -c with http_listen = "" says the endpoint is off.
	cfg := filepath.Join(t.TempDir(), "g.toml")
	os.WriteFile(cfg, []byte("[gateway]\nid = \"gw\"\ndata_dir = \"/tmp/x\"\nhttp_listen = \"\"\n"), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"status", "-c", cfg}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "http_listen") {
		t.Errorf("status -c with the endpoint off: exit %d, %s", code, errb.String())
	}
	// Nobody listening: a clear message, exit 1.
	errb.Reset()
	if code := run([]string{"status", "--http", "127.0.0.1:1"}, &out, &errb); code != exitFailure || !strings.Contains(errb.String(), "cannot reach the gateway") {
		t.Errorf("status with nobody listening: exit %d, %s", code, errb.String())
	}
}
