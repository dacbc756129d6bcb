package board

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/testenv"
)

// TestSystemdNotifyFromBinary runs the real binary the way systemd does
// with Type=notify and WatchdogSec=: a unixgram socket in NOTIFY_SOCKET and
// WATCHDOG_USEC. It must say READY=1 with a STATUS= line, ping WATCHDOG=1,
// answer SIGHUP with RELOADING=1 then READY=1, and say STOPPING=1 on
// SIGTERM and exit 0. (The wedged-loop case, where the pings must stop, is
// gateway.TestNotifyReadyStatusWatchdogAndWedge: it needs a test hook
// inside the process.)
func TestSystemdNotifyFromBinary(t *testing.T) {
	testenv.Integration(t, "the built binaries, qemu, dpkg and a real Mosquitto")
	bin := binary(t, "amd64")
	dir := t.TempDir()
	sockPath := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan string, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { conn.Close() })
	await := func(want string) string {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed before %q", want)
				}
				if strings.Contains(m, want) {
					return m
				}
			case <-deadline:
				t.Fatalf("no %q within 20s", want)
			}
		}
	}

	cfg := filepath.Join(dir, "gateway.toml")
	text := `[gateway]
id = "gw-notify"
data_dir = "` + filepath.Join(dir, "data") + `"
http_listen = ""
[broker]
listen = "` + freeAddr(t) + `"
[[device]]
name = "sim1"
type = "sim"
interval = "100ms"
`
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, []string{"NOTIFY_SOCKET=" + sockPath, "WATCHDOG_USEC=400000"}, bin, "run", "-c", cfg)

	ready := await("READY=1")
	if !strings.Contains(ready, "STATUS=running; devices ") || !strings.Contains(ready, "no upstream") {
		t.Errorf("READY datagram: %q", ready)
	}
	await("WATCHDOG=1")
	await("WATCHDOG=1")

	// Reload with a changed log level: RELOADING=1 with the monotonic time,
	// then READY=1 again.
	if err := os.WriteFile(cfg, []byte(strings.Replace(text, `id = "gw-notify"`, "id = \"gw-notify\"\nlog_level = \"debug\"", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if m := await("RELOADING=1"); !strings.Contains(m, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING without MONOTONIC_USEC: %q", m)
	}
	await("READY=1")
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	await("STOPPING=1")
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20s of SIGTERM")
	}
	if out := p.out.String(); !strings.Contains(out, `applied="gateway.log_level=debug"`) {
		t.Errorf("the reload did not log what it applied:\n%s", out)
	}
}
