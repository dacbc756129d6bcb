package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Raw MQTT 3.1.1 packets for clients that misbehave in ways paho will not.

// mqttLen encodes a remaining length (1 to 4 bytes).
func mqttLen(n int) []byte {
	var b []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func mqttStr(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// connectPacket is a clean-session CONNECT with keepalive 0 (the broker
// never times the client out by itself).
func connectPacket(id string) []byte {
	body := append(mqttStr("MQTT"), 4, 0x02, 0, 0)
	body = append(body, mqttStr(id)...)
	return append(append([]byte{0x10}, mqttLen(len(body))...), body...)
}

// subscribePacket subscribes filter at qos with packet id 1.
func subscribePacket(filter string, qos byte) []byte {
	body := append([]byte{0, 1}, mqttStr(filter)...)
	body = append(body, qos)
	return append(append([]byte{0x82}, mqttLen(len(body))...), body...)
}

// dialSmall dials addr with a small receive buffer set before the
// handshake, so a client that stops reading fills its window quickly.
func dialSmall(t testing.TB, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawMQTT connects a raw client and reads its CONNACK.
func rawMQTT(t testing.TB, addr, id string) net.Conn {
	t.Helper()
	c := dialSmall(t, addr)
	if _, err := c.Write(connectPacket(id)); err != nil {
		t.Fatalf("%s: write CONNECT: %v", id, err)
	}
	ack := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("%s: CONNACK %x, %v", id, ack, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c
}

// closedWithin reports whether the peer closes c within d (anything it
// sends first is read and ignored).
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			return !errors.As(err, &ne) || !ne.Timeout()
		}
	}
}

var sampleRE = regexp.MustCompile(`^([a-z_]+)(\{[^}]*\})? (\S+)$`)

// metric returns the value of one sample from the gateway's /metrics, e.g.
// metric(t, addr, `edgegw_broker_clients_refused_total{reason="slow_consumer"}`).
func metric(t testing.TB, httpAddr, sample string) float64 {
	t.Helper()
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		m := sampleRE.FindStringSubmatch(sc.Text())
		if m != nil && m[1]+m[2] == sample {
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sample, err)
			}
			return v
		}
	}
	t.Fatalf("metric %s not exposed", sample)
	return 0
}

// vmRSS is a process's resident memory in bytes (/proc/PID/status VmRSS).
func vmRSS(t testing.TB, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read VmRSS: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
