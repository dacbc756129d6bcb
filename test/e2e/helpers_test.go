// Package e2e holds the end-to-end tests: a real Mosquitto with mutual TLS
// upstream, the gateway with real devices on pseudo-terminals, and a
// subscriber on the upstream broker that checks what arrives.
package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/gateway"
	"github.com/edgegw/edgegw/gateway/config"
	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/mosquittotest"

	_ "github.com/edgegw/edgegw/devices/all"
	"github.com/edgegw/edgegw/internal/syncbuf"
)

// pki makes a CA, a server certificate for 127.0.0.1/localhost and client
// certificates for the gateway ("gw-01") and the test subscriber ("sub").
func pki(t testing.TB) certs.Files {
	t.Helper()
	f, err := certs.Init(certs.Options{Dir: filepath.Join(t.TempDir(), "pki"), ServerNames: []string{"localhost", "127.0.0.1"}, ClientNames: []string{"gw-01", "sub"}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func clientPair(t testing.TB, f certs.Files, name string) certs.Pair {
	for _, p := range f.Clients {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no client certificate %q", name)
	return certs.Pair{}
}

// upstream starts Mosquitto with mutual TLS: require_certificate, the CN as user name.
func upstream(t testing.TB, f certs.Files) *mosquittotest.Server {
	return mosquittotest.Start(t, mosquittotest.Options{CAFile: f.CA.Cert, CertFile: f.Server.Cert, KeyFile: f.Server.Key})
}

// received is what a subscriber got, in arrival order.
type received struct {
	mu   sync.Mutex
	msgs []paho.Message
	ch   chan struct{}
}

func (r *received) add(m paho.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *received) snapshot() []paho.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]paho.Message(nil), r.msgs...)
}

// waitFor waits until cond holds for what was received, or fails at timeout.
func (r *received) waitFor(t testing.TB, timeout time.Duration, what string, cond func([]paho.Message) bool) []paho.Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		msgs := r.snapshot()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-r.ch:
		case <-time.After(100 * time.Millisecond):
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s (received %d messages)", timeout, what, len(msgs))
		}
	}
}

// waitUpTo waits until cond holds for what was received or timeout passes,
// and reports which.
func (r *received) waitUpTo(timeout time.Duration, cond func([]paho.Message) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if cond(r.snapshot()) {
			return true
		}
		select {
		case <-r.ch:
		case <-deadline.C:
			return cond(r.snapshot())
		}
	}
}

// subscribe connects a paho client with the "sub" certificate and
// subscribes filter at qos.
func subscribe(t testing.TB, f certs.Files, addr, filter string, qos byte) *received {
	t.Helper()
	r := &received{ch: make(chan struct{}, 1)}
	opts := paho.NewClientOptions().AddBroker("ssl://" + addr).SetClientID(fmt.Sprintf("sub-%d", time.Now().UnixNano())).
		SetTLSConfig(clientTLS(t, f, "sub")).
		SetAutoReconnect(true).SetOrderMatters(true).SetCleanSession(true)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	if tok := c.Subscribe(filter, qos, func(_ paho.Client, m paho.Message) { r.add(m) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return r
}

// runGateway builds and runs a gateway in-process from config text until the
// test ends.
func runGateway(t testing.TB, cfgText string) (*gateway.Gateway, *syncbuf.Buffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.toml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	gw, err := gateway.Build(cfg, log)
	if err != nil {
		t.Fatalf("build:\n%v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	gw.Ready = func() { close(ready) }
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway run: %v", err)
			}
		case <-time.After(15 * time.Second):
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Errorf("gateway did not stop within 15s; goroutines:\n%s", buf[:n])
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", tail(logs.String(), 60))
			if b := gw.Status().Bridge; b != nil {
				t.Logf("bridge: %+v", *b)
			}
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("gateway stopped at start: %v\n%s", err, logs.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("gateway not ready within 15s:\n%s", logs.String())
	}
	return gw, logs
}

// waitUntil polls cond (a state, not an event source) with a deadline.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// reading is the payload contract of DESIGN.md.
type reading struct {
	Gateway string            `json:"gateway"`
	Device  string            `json:"device"`
	Type    string            `json:"type"`
	Seq     uint64            `json:"seq"`
	TS      string            `json:"ts"`
	UID     string            `json:"uid"`
	Values  map[string]any    `json:"values"`
	Units   map[string]string `json:"units"`
	Extra   map[string]any    `json:"-"`
}

func decode(t testing.TB, m paho.Message) reading {
	t.Helper()
	var r reading
	if err := json.Unmarshal(m.Payload(), &r); err != nil {
		t.Fatalf("payload on %s is not JSON: %v: %q", m.Topic(), err, m.Payload())
	}
	return r
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

type certsFiles = certs.Files

// clientTLS is a TLS client configuration with the named client certificate.
func clientTLS(t testing.TB, f certs.Files, name string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(f.CA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	p := clientPair(t, f, name)
	cert, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"}
}

// gwConfig is the head every end-to-end gateway configuration shares:
// gateway gw-01 on dataDir without HTTP, the embedded broker on
// brokerListen, upstream at upstreamAddr over mutual TLS as gw-01, with the
// lines of upstreamExtra (keepalive, backoff…) in [upstream]; rest follows
// (rules, sections, devices).
func gwConfig(t testing.TB, f certs.Files, dataDir, brokerListen, upstreamAddr, upstreamExtra, rest string) string {
	gw := clientPair(t, f, "gw-01")
	return fmt.Sprintf(`
[gateway]
id = "gw-01"
data_dir = %q
http_listen = ""
[broker]
listen = %q
[upstream]
address = "mqtts://%s"
%s
[upstream.tls]
cafile = %q
certfile = %q
keyfile = %q
%s`, dataDir, brokerListen, upstreamAddr, strings.TrimSpace(upstreamExtra), f.CA.Cert, gw.Cert, gw.Key, rest)
}

// topicRule is an [[upstream.topic]] rule with the remote prefix of gw-01.
func topicRule(pattern, direction string, qos int) string {
	return fmt.Sprintf(`
[[upstream.topic]]
pattern = %q
direction = %q
qos = %d
remote_prefix = "sites/s1/gw-01/"
`, pattern, direction, qos)
}
