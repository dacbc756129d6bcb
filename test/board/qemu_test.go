package board

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/testenv"
)

// emulated are the ARM builds and how qemu-user runs them. The ARMv6 build
// runs on an ARM1176 — the Pi Zero W's and Pi 1's CPU — so an instruction
// newer than ARMv6 would fault here as it would on the board.
var emulated = []struct {
	target, goarch string
	qemu           []string
}{
	{"armv6", "arm", []string{"qemu-arm-static", "-cpu", "arm1176"}},
	{"armv7", "arm", []string{"qemu-arm-static", "-cpu", "cortex-a7"}},
	{"arm64", "arm64", []string{"qemu-aarch64-static", "-cpu", "cortex-a53"}},
}

// TestQEMURuns runs each ARM build under qemu-user: version, check-config
// (a good and a bad file), and a short end-to-end run — a sim device into
// the embedded broker and over mutual TLS to a real Mosquitto on loopback,
// where a subscriber checks the readings arrive.
func TestQEMURuns(t *testing.T) {
	testenv.Integration(t, "the built binaries, qemu, dpkg and a real Mosquitto")
	need(t, "qemu-arm-static", "qemu-aarch64-static")
	mosquittotest.Require(t)
	for _, e := range emulated {
		t.Run(e.target, func(t *testing.T) {
			bin := binary(t, e.target)
			argv := func(args ...string) []string { return append(append(append([]string(nil), e.qemu...), bin), args...) }

			out := mustRun(t, 2*time.Minute, argv("version")[0], argv("version")[1:]...)
			if !strings.Contains(out, "edgegw "+testVersion) || !strings.Contains(out, "linux/"+e.goarch+")") {
				t.Errorf("version under qemu: %q", out)
			}

			f := pki(t)
			port := mosquittotest.FreePort(t)
			up := upstream(t, f, port)
			dir := t.TempDir()
			httpAddr := freeAddr(t)
			cfg := filepath.Join(dir, "gateway.toml")
			if err := os.WriteFile(cfg, []byte(gatewayConfig(f, filepath.Join(dir, "data"), up.Addr(), freeAddr(t), httpAddr, "")), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := runCmd(t, 2*time.Minute, argv("check-config", "-c", cfg)[0], argv("check-config", "-c", cfg)[1:]...); err != nil || !strings.Contains(out, "OK") {
				t.Fatalf("check-config under qemu: %v\n%s", err, out)
			}
			bad := filepath.Join(dir, "bad.toml")
			if err := os.WriteFile(bad, []byte("[gateway]\nid = \"gw-01\"\nhttp_listen = \"nope\"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := runCmd(t, 2*time.Minute, argv("check-config", "-c", bad)[0], argv("check-config", "-c", bad)[1:]...)
			if err == nil || !strings.Contains(out, "bad.toml:3: gateway.http_listen") {
				t.Errorf("check-config of a bad file under qemu: %v\n%s", err, out)
			}

			sub := subscribe(t, f, up.Addr(), "site/readings/#")
			p := start(t, nil, argv("run", "-c", cfg)...)
			waitUntil(t, 60*time.Second, "3 readings upstream from the emulated gateway", func() bool { return sub.count() >= 3 })
			for _, m := range sub.snapshot()[:3] {
				var r struct {
					Gateway, Device string
					Seq             uint64
				}
				if err := json.Unmarshal(m.Payload(), &r); err != nil || r.Gateway != "gw-01" || r.Device != "sim1" || r.Seq == 0 {
					t.Errorf("reading %s: %q (%v)", m.Topic(), m.Payload(), err)
				}
			}
			resp, err := http.Get("http://" + httpAddr + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 512)
			n, _ := resp.Body.Read(b)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b[:n]), "upstream: up") {
				t.Errorf("/readyz under qemu: %d %q", resp.StatusCode, b[:n])
			}
			t.Logf("%s: binary %.1f MiB, RSS of qemu+edgegw running (sim at 10/s, link up): %d KiB", e.target, fileMiB(bin), rssKiB(p.cmd.Process.Pid))
			if err := p.stop(t); err != nil {
				t.Errorf("edgegw under qemu exited with %v", err)
			}
		})
	}
}

func fileMiB(path string) float64 {
	st, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return float64(st.Size()) / (1 << 20)
}
