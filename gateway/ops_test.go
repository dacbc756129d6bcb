package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/gateway/config"

	_ "github.com/edgegw/edgegw/devices/sim"
)

// notifySocket is a fake systemd: a unixgram socket the gateway sends to.
type notifySocket struct {
	path string
	conn *net.UnixConn
	msgs chan string
	done chan struct{}
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s := &notifySocket{path: path, conn: conn, msgs: make(chan string, 4096), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			s.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close(); <-s.done })
	return s
}

// await waits for a datagram containing want; it fails at timeout.
func (s *notifySocket) await(t *testing.T, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-s.msgs:
			if strings.Contains(m, want) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q from the gateway within %s", want, timeout)
		}
	}
}

// drain discards what has arrived.
func (s *notifySocket) drain() {
	for {
		select {
		case <-s.msgs:
		default:
			return
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startGateway builds a gateway from cfgText with the given ops settings and
// runs it until the test ends.
func startGateway(t *testing.T, cfgText string, set opsSettings) (*Gateway, *syncBuf, context.CancelFunc, chan error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.toml")
	cfgText = strings.ReplaceAll(cfgText, "@DIR@", dir)
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncBuf{}
	g, err := Build(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	g.ops.set = set
	g.LogLevel = new(slog.LevelVar)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	g.Ready = func() { close(ready) }
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("gateway did not stop within 15s")
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("gateway stopped at start: %v\n%s", err, logs.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("gateway not ready within 15s\n%s", logs.String())
	}
	return g, logs, cancel, done
}

const simConfig = `
[gateway]
id = "gw-test"
data_dir = "@DIR@/data"
http_listen = "127.0.0.1:0"
[broker]
listen = ""
[[device]]
name = "sim1"
type = "sim"
interval = "20ms"
`

// TestNotifyReadyStatusWatchdogAndWedge drives the gateway with a fake
// NOTIFY_SOCKET: READY=1 once up, STATUS= lines, WATCHDOG=1 every
// WATCHDOG_USEC/2 — and no WATCHDOG=1 while a device's publish step is
// wedged (a local subscriber that never returns blocks the publisher, as a
// stuck command handler would), then pings again once it is released, and
// STOPPING=1 at the end.
func TestNotifyReadyStatusWatchdogAndWedge(t *testing.T) {
	sock := listenNotify(t)
	env := map[string]string{"NOTIFY_SOCKET": sock.path, "WATCHDOG_USEC": "200000"} // pings every 100ms
	set := opsSettings{statusEvery: 50 * time.Millisecond, probeEvery: 50 * time.Millisecond, deviceMax: 300 * time.Millisecond,
		getenv: func(k string) string { return env[k] }, hup: make(chan os.Signal, 1)}
	g, logs, cancel, done := startGateway(t, simConfig, set)

	ready := sock.await(t, "READY=1", 5*time.Second)
	if !strings.Contains(ready, "STATUS=running; devices ") {
		t.Errorf("READY datagram has no status line: %q", ready)
	}
	st := sock.await(t, "STATUS=", 5*time.Second)
	if !strings.Contains(st, "no upstream") {
		t.Errorf("status line %q does not say there is no upstream", st)
	}
	sock.await(t, "WATCHDOG=1", 5*time.Second)

	// Wedge: readings/sim1 gets a subscriber that blocks.
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	cancelSub, err := g.broker.Subscribe("readings/sim1", func(broker.Message) { <-release })
	if err != nil {
		t.Fatal(err)
	}
	defer cancelSub()
	health := "http://" + g.HTTPAddr() + "/healthz"
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get(t, health)
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "device sim1") {
				t.Errorf("/healthz 503 body %q does not name the stuck device", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz still %d 5s after the wedge", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The watchdog ticker may have fired just before the heart went stale;
	// after one more interval no ping may come.
	time.Sleep(150 * time.Millisecond)
	sock.drain()
	window := time.After(600 * time.Millisecond) // six ping intervals
	for quiet := true; quiet; {
		select {
		case m := <-sock.msgs:
			if strings.Contains(m, "WATCHDOG=1") {
				t.Fatalf("WATCHDOG=1 sent while device sim1 is wedged")
			}
		case <-window:
			quiet = false
		}
	}
	if !strings.Contains(logs.String(), "watchdog pings stopped") {
		t.Errorf("no log line says the watchdog pings stopped")
	}

	unblock()
	sock.await(t, "WATCHDOG=1", 5*time.Second)
	if code, _ := get(t, health); code != http.StatusOK {
		t.Errorf("/healthz %d after the wedge was released", code)
	}

	cancel()
	sock.await(t, "STOPPING=1", 5*time.Second)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	done <- nil // for the cleanup
}

// TestReloadLogLevelAndRestartNeeded: SIGHUP applies log_level at once and
// names every other change as needing a restart.
func TestReloadLogLevelAndRestartNeeded(t *testing.T) {
	hup := make(chan os.Signal, 1)
	set := defaultOpsSettings()
	set.getenv = func(string) string { return "" }
	set.hup = hup
	g, logs, _, _ := startGateway(t, simConfig, set)
	text := strings.ReplaceAll(simConfig, "@DIR@", filepath.Dir(g.cfg.File()))
	text = strings.Replace(text, `id = "gw-test"`, "id = \"gw-test\"\nlog_level = \"debug\"", 1)
	text = strings.Replace(text, `interval = "20ms"`, `interval = "30ms"`, 1)
	if err := os.WriteFile(g.cfg.File(), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	hup <- os.Interrupt // any value: the loop only waits for a receive
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "msg=reloaded") {
		if time.Now().After(deadline) {
			t.Fatal("no reload logged within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if g.LogLevel.Level() != slog.LevelDebug {
		t.Errorf("log level after reload = %v, want DEBUG", g.LogLevel.Level())
	}
	l := logs.String()
	if !strings.Contains(l, `applied="gateway.log_level=debug"`) || !strings.Contains(l, "device list") {
		t.Errorf("reload log does not name what was applied and what needs a restart:\n%s", l)
	}

	// A broken file is refused and the running configuration kept.
	if err := os.WriteFile(g.cfg.File(), []byte("[gateway]\nid = \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup <- os.Interrupt
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "keeping the running one") {
		if time.Now().After(deadline) {
			t.Fatal("a broken file on reload was not reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
