package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgegw/edgegw/internal/loopfs"
	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/netproxy"
	"github.com/edgegw/edgegw/internal/powerfs"
	"github.com/edgegw/edgegw/internal/testenv"
)

// Disk faults against the real binary: the outbox's storage fails under
// the gateway (a full file system, one gone read-only) while the uplink is
// down and messages must go to disk. The gateway must say so (/healthz and
// /readyz 503 naming the cause), acknowledge nothing it cannot keep, count
// the device readings it refuses, stay up, and recover by itself when the
// storage does; every message it acknowledged arrives upstream.

// storageFault breaks and heals the storage under data_dir.
type storageFault struct {
	// cause is a fragment of the error /healthz must name while broken.
	cause string
	// brk makes the storage fail; heal makes it work again.
	brk, heal func()
}

// httpGet returns the status and body of a GET, or code 0 on a transport
// error.
func httpGet(url string) (int, string) {
	cl := http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// awaitCond polls ok every 50 ms until it holds or timeout passes; it
// reports whether it held.
func awaitCond(timeout time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// runStorageFault runs the disk-fault scenario with data_dir on dataDir.
func runStorageFault(t *testing.T, dataDir string, fault storageFault) {
	f := pki(t)
	up := upstream(t, f)
	px, err := netproxy.New(up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	px.Cut() // the uplink is down from the start: everything goes to disk
	sub := subscribeSeqs(t, f, up.Addr(), 1)

	brokerAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(mosquittotest.FreePort(t)))
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(mosquittotest.FreePort(t)))
	extra := `[buffer]
segment_bytes = "64KiB"
commit_interval = "50ms"

[[device]]
name = "sim1"
type = "sim"
kind = "rfid"
interval = "20ms"
qos = 1
`
	cfg := strings.Replace(storeConfig(t, f, dataDir, brokerAddr, px.Addr(), 1, extra),
		`http_listen = ""`, fmt.Sprintf("http_listen = %q", httpAddr), 1)
	gw := newGwProc(t, cfg, brokerAddr)
	gw.start()
	base := "http://" + httpAddr
	alive := func(when string) {
		t.Helper()
		select {
		case <-gw.done:
			t.Fatalf("edgegw exited %s: %v", when, gw.cmd.ProcessState)
		default:
		}
	}

	want := map[string][]uint64{}
	next := map[string]uint64{}
	// publish sends n numbered messages from a fresh client, one at a time,
	// and returns how many were acknowledged; an acknowledged one is
	// recorded in want.
	publish := func(id string, n int, ackWait time.Duration) (acked int) {
		t.Helper()
		c := localClient(brokerAddr, id, true, nil)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("local publisher %s connect: %v", id, tok.Error())
		}
		defer c.Disconnect(100)
		for i := 0; i < n; i++ {
			topic := storeTopics[i%len(storeTopics)]
			next[topic]++
			seq := next[topic]
			tok := c.Publish(topic, 1, false, payloadOf(topic, seq))
			if tok.WaitTimeout(ackWait) && tok.Error() == nil {
				want[topic] = append(want[topic], seq)
				acked++
			}
			if !c.IsConnected() {
				break // refused: the gateway disconnected the publisher
			}
		}
		return acked
	}

	// Healthy, link down: every message acknowledged from disk.
	if got := publish("pub-before", 30, 5*time.Second); got != 30 {
		t.Fatalf("before the fault: %d of 30 messages acknowledged", got)
	}
	if code, body := httpGet(base + "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz before the fault: %d %q", code, body)
	}

	fault.brk()
	if !awaitCond(20*time.Second, func() bool {
		code, body := httpGet(base + "/healthz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "storage failing") && strings.Contains(body, fault.cause)
	}) {
		code, body := httpGet(base + "/healthz")
		t.Fatalf("/healthz did not report the storage failure (%q) within 20s: %d %q", fault.cause, code, body)
	}
	if code, body := httpGet(base + "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, fault.cause) {
		t.Fatalf("/readyz while the storage fails: %d %q, want 503 naming %q", code, body, fault.cause)
	}
	if v := metric(t, httpAddr, "edgegw_outbox_storage_failing"); v != 1 {
		t.Errorf("edgegw_outbox_storage_failing = %v while the storage fails, want 1", v)
	}
	// Device readings go on and are refused: counted as dropped for
	// storage, visibly rising, and never as published.
	const readings = `edgegw_device_readings_total{device="sim1",type="sim"}`
	r0 := metric(t, httpAddr, readings)
	d0 := metric(t, httpAddr, `edgegw_outbox_dropped_total{reason="storage"}`)
	if !awaitCond(10*time.Second, func() bool {
		return metric(t, httpAddr, `edgegw_outbox_dropped_total{reason="storage"}`) >= d0+5
	}) {
		t.Errorf("edgegw_outbox_dropped_total{reason=\"storage\"} did not rise by 5 within 10s from %v while the device publishes", d0)
	}
	if r1 := metric(t, httpAddr, readings); r1 != r0 {
		t.Errorf("%s rose from %v to %v while every reading was refused: a refused reading counted as published", readings, r0, r1)
	}
	// A local publisher is not acknowledged.
	if got := publish("pub-during", 3, 2*time.Second); got != 0 {
		t.Errorf("while the storage fails: %d of 3 messages acknowledged, want 0", got)
	}
	alive("while the storage failed")
	t.Logf("while failing: %v readings/messages refused for storage", metric(t, httpAddr, `edgegw_outbox_dropped_total{reason="storage"}`))

	fault.heal()
	healed := time.Now()
	if !awaitCond(40*time.Second, func() bool { code, _ := httpGet(base + "/healthz"); return code == http.StatusOK }) {
		code, body := httpGet(base + "/healthz")
		t.Fatalf("/healthz did not recover within 40s of the storage working again: %d %q", code, body)
	}
	t.Logf("recovered %v after the storage worked again", time.Since(healed).Round(time.Millisecond))
	if code, body := httpGet(base + "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after recovery: %d %q", code, body)
	}
	if v := metric(t, httpAddr, "edgegw_outbox_storage_failing"); v != 0 {
		t.Errorf("edgegw_outbox_storage_failing = %v after recovery, want 0", v)
	}
	if got := publish("pub-after", 30, 5*time.Second); got != 30 {
		t.Fatalf("after recovery: %d of 30 messages acknowledged", got)
	}
	alive("after recovery")

	// The uplink returns: everything acknowledged arrives.
	px.Restore()
	if !sub.waitFor(20*time.Second, func(got map[string][]uint64) bool { return haveAll(got, want) }) {
		t.Errorf("not every acknowledged message arrived within 20s of the uplink's return")
	}
	sub.mu.Lock()
	var bad []string
	for _, b := range sub.bad {
		if !strings.HasPrefix(b, remotePrefix+"readings/sim1 ") {
			bad = append(bad, b) // the device's JSON readings are not numbered messages
		}
	}
	sub.mu.Unlock()
	checkSeqs(t, sub.snapshot(), bad, acceptance{want: want})
	gw.stop()
}

// fillFS fills the file system holding dir with one preallocated file and
// returns its path.
func fillFS(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var off int64
	for chunk := int64(256 << 20); chunk >= 4096; {
		if unix.Fallocate(int(f.Fd()), 0, off, chunk) != nil {
			chunk /= 2
			continue
		}
		off += chunk
	}
	return path
}

// TestDiskFull: data_dir on a small real ext4 filled up under the running
// gateway, then freed.
func TestDiskFull(t *testing.T) {
	testenv.Root(t, "a loop-mounted ext4 to fill")
	fs := loopfs.Mount(t, 32<<20)
	var filler string
	runStorageFault(t, filepath.Join(fs.Dir, "data"), storageFault{
		cause: "no space left on device",
		brk:   func() { filler = fillFS(t, fs.Dir) },
		heal: func() {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// TestReadOnlyDisk: data_dir on a powerfs mount that starts refusing every
// change with EROFS under the running gateway (as a file system the
// kernel remounted read-only after an error), then accepts them again.
func TestReadOnlyDisk(t *testing.T) {
	testenv.Root(t, "a FUSE mount (powerfs) to make read-only")
	if err := powerfs.Available(); err != nil {
		t.Fatalf("powerfs: %v", err)
	}
	srv, err := powerfs.Mount(powerfs.NewModel(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the gateway's own cleanup has killed it
		srv.Model.SetReadOnly(false)
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	runStorageFault(t, srv.Dir(), storageFault{
		cause: "read-only file system",
		brk:   func() { srv.Model.SetReadOnly(true) },
		heal:  func() { srv.Model.SetReadOnly(false) },
	})
}
