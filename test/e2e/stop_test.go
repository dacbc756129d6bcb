package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/testenv"
)

// TestSIGTERMStopsInBoundedTime runs the real binary into the states that
// used to hold a SIGTERM until systemd's SIGKILL, sends SIGTERM, and checks
// it exits 0 within a few seconds, stopping its steps in the documented
// order (read from its debug log).
func TestSIGTERMStopsInBoundedTime(t *testing.T) {
	testenv.Integration(t, "the built binary")
	order := []string{"outbox waits", "devices", "uplink", "ops", "ecosystem", "broker", "deadletter", "outbox", "data_dir"}
	cases := []struct {
		name  string
		extra string // TOML after [upstream]
		// upstream: "down" (nobody listens) or "silent" (accepts TCP,
		// never answers CONNECT).
		upstream string
		// await is a log line that shows the state was reached.
		await string
	}{
		{
			name:     "full buffer, full_policy = block, uplink down",
			extra:    "[buffer]\nmax_bytes = \"256KiB\"\nsegment_bytes = \"64KiB\"\nfull_policy = \"block\"\n",
			upstream: "down",
			await:    "local publishers are held back",
		},
		{
			name:     "upstream accepts TCP and never answers CONNECT",
			upstream: "silent",
			await:    "outbox open",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var addr string
			var mu sync.Mutex
			var held []net.Conn
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr = ln.Addr().String()
			if c.upstream == "down" {
				ln.Close()
			} else {
				go func() {
					for {
						conn, err := ln.Accept()
						if err != nil {
							return
						}
						mu.Lock()
						held = append(held, conn)
						mu.Unlock()
					}
				}()
				t.Cleanup(func() {
					ln.Close()
					mu.Lock()
					for _, conn := range held {
						conn.Close()
					}
					mu.Unlock()
				})
			}
			dir := t.TempDir()
			brokerAddr := fmt.Sprintf("127.0.0.1:%d", mosquittotest.FreePort(t))
			cfg := fmt.Sprintf(`[gateway]
id = "gw-stop"
data_dir = %q
http_listen = ""
log_level = "debug"
[broker]
listen = %q
[upstream]
address = "mqtt://%s"
backoff_min = "50ms"
backoff_max = "200ms"
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = 1
%s
[[device]]
name = "sim1"
type = "sim"
interval = "1ms"
`, filepath.Join(dir, "data"), brokerAddr, addr, c.extra)
			p := newGwProc(t, cfg, brokerAddr)
			p.start()
			deadline := time.Now().Add(30 * time.Second)
			for !strings.Contains(p.logs.String(), c.await) {
				if time.Now().After(deadline) {
					t.Fatalf("no %q in the log within 30s", c.await)
				}
				time.Sleep(10 * time.Millisecond) // a log line has no event to wait on
			}
			if c.upstream == "silent" {
				waitUntil(t, 10*time.Second, "the bridge connected to the silent upstream", func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(held) > 0
				})
			}
			start := time.Now()
			p.stop() // SIGTERM; fails the test after 15 s
			took := time.Since(start)
			t.Logf("exited %v after SIGTERM", took.Round(time.Millisecond))
			if took > 5*time.Second {
				t.Errorf("SIGTERM took %v; want a few seconds at most", took)
			}
			var got []string
			for _, m := range regexp.MustCompile(`msg=stopped .*?step=("[^"]+"|\S+)`).FindAllStringSubmatch(p.logs.String(), -1) {
				got = append(got, strings.Trim(m[1], `"`))
			}
			if strings.Join(got, ",") != strings.Join(order, ",") {
				t.Errorf("stop order %q; want %q", got, order)
			}
			if _, err := os.Stat(filepath.Join(dir, "data", "outbox")); err != nil {
				t.Errorf("outbox: %v", err)
			}
		})
	}
}
