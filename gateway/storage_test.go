package gateway

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/loopfs"
	"golang.org/x/sys/unix"
)

// TestHealthReportsStorageFailure puts data_dir on a small real ext4 and
// fills it while the uplink is down and a device keeps publishing: /healthz
// and /readyz answer 503 naming the storage error, and both are 200 again
// once space is freed, without a restart.
func TestHealthReportsStorageFailure(t *testing.T) {
	fs := loopfs.Mount(t, 32<<20)
	cfg := strings.ReplaceAll(simConfig, "@DIR@/data", fs.Dir+"/data")
	cfg = strings.Replace(cfg, `interval = "20ms"`, `interval = "2ms"`, 1) + `
[upstream]
address = "mqtt://127.0.0.1:1"
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = 1
[buffer]
segment_bytes = "64KiB"
`
	g, logs, _, _ := startGateway(t, cfg, opsSettings{})
	filler := filepath.Join(fs.Dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	var off int64
	for chunk := int64(64 << 20); chunk >= 4096; {
		if unix.Fallocate(int(f.Fd()), 0, off, chunk) != nil {
			chunk /= 2
			continue
		}
		off += chunk
	}
	f.Close()
	base := "http://" + g.HTTPAddr()
	await := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	await("/healthz to report the full disk", func() bool {
		code, body := get(t, base+"/healthz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "storage failing") && strings.Contains(body, "no space")
	})
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "storage failing") {
		t.Fatalf("/readyz %d %q while the disk is full", code, body)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	await("/healthz to recover", func() bool { code, _ := get(t, base+"/healthz"); return code == http.StatusOK })
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d after space was freed", code)
	}
}
