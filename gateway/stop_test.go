package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/gateway/config"
)

// Two drivers that only tests need: flood emits 1 KiB readings as fast as
// the gateway takes them (it fills a small buffer at once), and stuck
// ignores its context until the test releases it (a driver blocked in a
// read that never returns).
var stuckRelease = make(chan struct{})

func init() {
	devices.Register(devices.Driver{Type: "test_flood", Summary: "test: 1 KiB readings as fast as taken", New: func(devices.Env, devices.Decoder) (devices.Device, error) {
		return floodDevice{}, nil
	}})
	devices.Register(devices.Driver{Type: "test_stuck", Summary: "test: ignores its context", New: func(devices.Env, devices.Decoder) (devices.Device, error) {
		return stuckDevice{}, nil
	}})
}

type floodDevice struct{}

func (floodDevice) Run(ctx context.Context, emit func(devices.Reading)) error {
	pad := strings.Repeat("x", 1024)
	for ctx.Err() == nil {
		emit(devices.Reading{Fields: []devices.Field{{Name: "pad", Value: pad}}})
	}
	return nil
}

type stuckDevice struct{}

func (stuckDevice) Run(_ context.Context, emit func(devices.Reading)) error {
	emit(devices.Reading{Fields: []devices.Field{{Name: "n", Value: int64(1)}}})
	<-stuckRelease
	return nil
}

// fakeUpstream is a TCP server that takes connections and either never
// answers (a stall in the handshake) or accepts CONNECT and then never reads
// again (a stall with the link up). It runs on one goroutine, started before
// the goroutine count is taken.
type fakeUpstream struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func startFakeUpstream(t *testing.T, connack bool) *fakeUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &fakeUpstream{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(u.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns = append(u.conns, c)
			u.mu.Unlock()
			if connack {
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 512)
				if _, err := c.Read(buf); err == nil { // the CONNECT (small, one read)
					_, _ = c.Write([]byte{0x20, 2, 0, 0}) // CONNACK, accepted
				}
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-u.done
		u.mu.Lock()
		for _, c := range u.conns {
			c.Close()
		}
		u.mu.Unlock()
	})
	return u
}

func (u *fakeUpstream) connected() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.conns)
}

// mqttClient connects to the local broker with a raw CONNECT, optionally
// subscribes to filter, and keeps the connection open until the test ends.
func mqttClient(t *testing.T, addr, id, filter string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// MQTT 3.1.1 CONNECT (clean session, keepalive 60 s), then SUBSCRIBE.
	str := func(v string) []byte { return append([]byte{byte(len(v) >> 8), byte(len(v))}, v...) }
	packet := func(header byte, body []byte) []byte { return append([]byte{header, byte(len(body))}, body...) }
	var buf bytes.Buffer
	buf.Write(packet(0x10, append(append(str("MQTT"), 4, 0x02, 0, 60), str(id)...)))
	if filter != "" {
		buf.Write(packet(0x82, append(append([]byte{0, 1}, str(filter)...), 1)))
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := c.Read(ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("local broker did not accept %s: % x, %v", id, ack, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c
}

// TestStopInEveryState runs the gateway into each state a SIGTERM can find
// it in and stops it: the stop must finish in bounded time, stop the steps
// in the documented order, and leave no goroutine of its own behind (except
// the driver that ignores its context, which is abandoned after the devices
// step's budget and named in the log).
func TestStopInEveryState(t *testing.T) {
	// Every healthy stop below takes milliseconds, so a short budget tells
	// them from a hang without waiting the production 3 s.
	withUpstream := []string{"outbox waits", "devices", "uplink", "ops", "ecosystem", "broker", "deadletter", "outbox", "data_dir"}
	cases := []struct {
		name string
		// config is the TOML; @UP@ is replaced by the fake upstream's address.
		config string
		// upstream: "" none, "down" (a port nobody listens on), "silent"
		// (accepts, never answers), "stalled" (CONNACK, then never reads).
		upstream string
		// prepare brings the running gateway into the state.
		prepare func(t *testing.T, g *Gateway, up *fakeUpstream)
		order   []string
		leaks   bool // a driver is deliberately left running
		maxStop time.Duration
	}{
		{
			name:    "no upstream, a device publishing",
			config:  "@GW@\n[[device]]\nname = \"sim1\"\ntype = \"sim\"\ninterval = \"5ms\"\n",
			prepare: func(t *testing.T, g *Gateway, _ *fakeUpstream) { awaitReadings(t, g, 5) },
			order:   []string{"devices", "ops", "ecosystem", "broker", "data_dir"},
			maxStop: 2 * time.Second,
		},
		{
			name:     "uplink down, backlog on disk",
			config:   "@GW@\n@UPSTREAM@\n[[device]]\nname = \"sim1\"\ntype = \"sim\"\ninterval = \"5ms\"\n",
			upstream: "down",
			prepare:  func(t *testing.T, g *Gateway, _ *fakeUpstream) { awaitReadings(t, g, 5) },
			order:    withUpstream,
			maxStop:  2 * time.Second,
		},
		{
			name:     "full buffer under full_policy = block, uplink down, device blocked in the outbox",
			config:   "@GW@\n@UPSTREAM@\n[buffer]\nmax_bytes = \"256KiB\"\nsegment_bytes = \"64KiB\"\nfull_policy = \"block\"\n[[device]]\nname = \"flood\"\ntype = \"test_flood\"\n",
			upstream: "down",
			prepare: func(t *testing.T, g *Gateway, _ *fakeUpstream) {
				waitFor(t, 10*time.Second, "the device to block on the full buffer", func() bool {
					st := g.Status()
					return st.Bridge != nil && st.Bridge.Outbox.Blocked > 0
				})
			},
			order:   withUpstream,
			maxStop: testStopBudget * 8 / 10, // without the release it hangs until the devices budget abandons them
		},
		{
			name:     "upstream accepts TCP and never answers CONNECT",
			config:   "@GW@\n@UPSTREAM@\n[[device]]\nname = \"sim1\"\ntype = \"sim\"\ninterval = \"5ms\"\n",
			upstream: "silent",
			prepare: func(t *testing.T, g *Gateway, up *fakeUpstream) {
				waitFor(t, 10*time.Second, "the bridge to connect", func() bool { return up.connected() > 0 })
			},
			order:   withUpstream,
			maxStop: 3 * time.Second,
		},
		{
			name:     "upstream stalled after CONNACK, backlog waiting",
			config:   "@GW@\n@UPSTREAM@\n[[device]]\nname = \"flood\"\ntype = \"test_flood\"\n",
			upstream: "stalled",
			prepare: func(t *testing.T, g *Gateway, _ *fakeUpstream) {
				waitFor(t, 10*time.Second, "the link to come up with messages waiting", func() bool {
					st := g.Status()
					return st.Bridge != nil && st.Bridge.LinkUp && st.Bridge.Outbox.Messages > 100
				})
			},
			order:   withUpstream,
			maxStop: 4 * time.Second,
		},
		{
			name:    "a device driver that ignores its context",
			config:  "@GW@\n[[device]]\nname = \"stuck\"\ntype = \"test_stuck\"\n",
			prepare: func(t *testing.T, g *Gateway, _ *fakeUpstream) { awaitReadings(t, g, 1) },
			order:   []string{"devices", "ops", "ecosystem", "broker", "data_dir"},
			leaks:   true,
			maxStop: stopBudget + 2*time.Second,
		},
		{
			name:     "local broker with clients connected and subscribed",
			config:   "@GW@\n@UPSTREAM@\n[[device]]\nname = \"sim1\"\ntype = \"sim\"\ninterval = \"5ms\"\n",
			upstream: "down",
			prepare: func(t *testing.T, g *Gateway, _ *fakeUpstream) {
				mqttClient(t, g.BrokerAddr(), "idle", "")
				sub := mqttClient(t, g.BrokerAddr(), "reader", "readings/#")
				go func() { _, _ = bytes.NewBuffer(nil).ReadFrom(sub) }() // reads until the broker closes it
				awaitReadings(t, g, 5)
			},
			order:   withUpstream,
			maxStop: 2 * time.Second,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var up *fakeUpstream
			upstreamAddr := ""
			switch c.upstream {
			case "down":
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				upstreamAddr = ln.Addr().String()
				ln.Close() // nobody listens there now
			case "silent", "stalled":
				up = startFakeUpstream(t, c.upstream == "stalled")
				upstreamAddr = up.ln.Addr().String()
			}
			base := runtime.NumGoroutine()
			dir := t.TempDir()
			text := strings.ReplaceAll(c.config, "@GW@", "[gateway]\nid = \"gw-stop\"\ndata_dir = \"@DIR@/data\"\nhttp_listen = \"127.0.0.1:0\"\n[broker]\nlisten = \"127.0.0.1:0\"")
			text = strings.ReplaceAll(text, "@UPSTREAM@", "[upstream]\naddress = \"mqtt://"+upstreamAddr+"\"\nbackoff_min = \"50ms\"\nbackoff_max = \"200ms\"\n[[upstream.topic]]\npattern = \"readings/#\"\ndirection = \"out\"\nqos = 1")
			text = strings.ReplaceAll(text, "@DIR@", dir)
			path := filepath.Join(dir, "gateway.toml")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatalf("config: %v\n%s", err, text)
			}
			logs := &syncBuf{}
			g, err := Build(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			set := defaultOpsSettings()
			set.getenv = func(string) string { return "" }
			set.hup = make(chan os.Signal, 1)
			g.ops.set = set
			g.stopBudget = testStopBudget
			var mu sync.Mutex
			var order []string
			g.stopTrace = func(step string, took time.Duration, err error) {
				mu.Lock()
				defer mu.Unlock()
				order = append(order, step)
				if err != nil {
					t.Logf("stop %s after %v: %v", step, took, err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ready := make(chan struct{})
			g.Ready = func() { close(ready) }
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			defer func() {
				if t.Failed() {
					t.Logf("gateway log:\n%s", logs.String())
				}
			}()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("gateway stopped at start: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("gateway not ready within 10s")
			}
			c.prepare(t, g, up)

			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err != nil && !c.leaks {
					t.Errorf("Run = %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("Run did not return within 30s of the stop (budget %v)", c.maxStop)
			}
			took := time.Since(start)
			t.Logf("stopped in %v", took.Round(time.Millisecond))
			if took > c.maxStop {
				t.Errorf("stop took %v; want at most %v", took, c.maxStop)
			}
			mu.Lock()
			got := slices.Clone(order)
			mu.Unlock()
			if !slices.Equal(got, c.order) {
				t.Errorf("stop order %q; want %q", got, c.order)
			}
			if c.leaks {
				if !strings.Contains(logs.String(), "stop devices") && !strings.Contains(logs.String(), "did not finish in time") {
					t.Errorf("the abandoned devices stop is not in the log")
				}
				stuckRelease <- struct{}{} // let the abandoned driver go
				return
			}
			noLeaks(t, base)
		})
	}
}

// testStopBudget is the stop budget of TestStopInEveryState.
const testStopBudget = time.Second

// awaitReadings waits until the gateway has published n readings.
func awaitReadings(t *testing.T, g *Gateway, n uint64) {
	t.Helper()
	waitFor(t, 10*time.Second, "readings", func() bool {
		var sum uint64
		for _, d := range g.Status().Devices {
			sum += d.Readings
		}
		return sum >= n
	})
}

// waitFor polls cond (state with no event to wait on) until timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// noLeaks fails when more goroutines run than before the gateway started,
// once those that are ending have had a moment; it prints the extra stacks.
func noLeaks(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("%d goroutines outlived Run (before: %d):\n%s", runtime.NumGoroutine()-base, base, buf)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
