package board

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/mosquittotest"
)

// attackMarginKiB is how far above idle the emulated gateway's resident
// memory (qemu's own included) may go during the attack: sixteen
// connections' read buffers (32 KiB each), a refused packet's garbage, and
// room for the Go heap to grow. Without a maximum packet size each header
// reserved 256 MiB: on a 32-bit ARMv6 the fourth or so ends the process with
// "fatal error: out of memory".
const attackMarginKiB = 16 << 10

// TestARMv6SurvivesOversizedHeaders sends the ARMv6 build, under
// qemu-arm-static -cpu arm1176, sixteen 5-byte CONNECT fixed headers that
// each announce 256 MB, and a PUBLISH announcing 50 MB with its body. The
// gateway refuses each from its header (counted), keeps publishing its
// readings upstream, and stays within attackMarginKiB of idle.
func TestARMv6SurvivesOversizedHeaders(t *testing.T) {
	need(t, "qemu-arm-static")
	mosquittotest.Require(t)
	bin := binary(t, "armv6")
	f := pki(t)
	up := upstream(t, f, mosquittotest.FreePort(t))
	dir := t.TempDir()
	httpAddr, brokerAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(cfg, []byte(gatewayConfig(f, filepath.Join(dir, "data"), up.Addr(), brokerAddr, httpAddr, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, f, up.Addr(), "site/readings/#")
	p := start(t, nil, "qemu-arm-static", "-cpu", "arm1176", bin, "run", "-c", cfg)
	waitUntil(t, 60*time.Second, "3 readings upstream from the emulated gateway", func() bool { return sub.count() >= 3 })
	pid := p.cmd.Process.Pid
	idle := rssKiB(pid)

	var conns []net.Conn
	for range 16 {
		c, err := net.DialTimeout("tcp", brokerAddr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		if !peerCloses(c, 30*time.Second) {
			t.Errorf("oversized CONNECT %d: connection not closed", i)
		}
	}
	// A connected client announcing a 50 MB PUBLISH, and sending it.
	c, err := net.DialTimeout("tcp", brokerAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	connect := []byte{0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 4, 'b', 'i', 'g', '1'}
	connect[1] = byte(len(connect) - 2)
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(ack); err != nil || ack[0] != 0x20 {
		t.Fatalf("CONNACK %x: %v", ack, err)
	}
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write([]byte{0x30, 0x80, 0x80, 0x80, 0x19}); err != nil { // remaining length 50 MiB
			return
		}
		chunk := bytes.Repeat([]byte("z"), 1<<20)
		for range 50 {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	if !peerCloses(c, 30*time.Second) {
		t.Error("50 MB PUBLISH: connection not closed")
	}
	select {
	case err := <-p.done:
		p.done <- err
		t.Fatalf("the emulated gateway died: %v\n%s", err, p.out.String())
	default:
	}
	// The broker counts a refusal once the connection has ended, which the
	// peer may see first (under qemu by some milliseconds): wait for it.
	const tooLarge = `edgegw_broker_clients_refused_total{reason="packet_too_large"}`
	deadline := time.Now().Add(30 * time.Second)
	for boardMetric(t, httpAddr, tooLarge) < 17 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := boardMetric(t, httpAddr, tooLarge); n != 17 {
		t.Errorf("packet_too_large counter = %v, want 17", n)
	}
	before := sub.count()
	waitUntil(t, 60*time.Second, "readings upstream after the attack", func() bool { return sub.count() >= before+3 })
	rss := rssKiB(pid)
	t.Logf("armv6 under qemu: VmRSS idle %d KiB, after 16 × 256 MB CONNECT headers and a 50 MB PUBLISH %d KiB (allowed +%d KiB)", idle, rss, attackMarginKiB)
	if rss > idle+attackMarginKiB {
		t.Errorf("VmRSS grew from %d to %d KiB, more than the %d KiB margin", idle, rss, attackMarginKiB)
	}
	if err := p.stop(t); err != nil {
		t.Errorf("edgegw under qemu exited with %v", err)
	}
}

// peerCloses reports whether the peer closes c within d.
func peerCloses(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			ne, ok := err.(net.Error)
			return !ok || !ne.Timeout()
		}
	}
}

// boardMetric reads one sample of /metrics.
func boardMetric(t testing.TB, httpAddr, sample string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("metric %s not exposed", sample)
	return 0
}
