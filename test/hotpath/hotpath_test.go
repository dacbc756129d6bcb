// Package hotpath measures the CPU one QoS 1 message costs the gateway on
// its whole hot path: a local publisher's PUBLISH into the embedded broker,
// the bridge, the outbox's memory window, the upstream PUBLISH over mutual
// TLS to a real Mosquitto, its PUBACK, and the local PUBACK back. The
// benchmark runs the gateway in this process, so its CPU time and
// allocations per message are this process's (the publisher's share is one
// write and one read per message); run it under callgrind
// (scripts/hotpath-callgrind.sh) for an instruction count that does not
// depend on the machine's load.
package hotpath

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/edgegw/edgegw/gateway"
	"github.com/edgegw/edgegw/gateway/config"
	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/mosquittotest"
)

// startGateway runs a gateway with one out rule to a Mosquitto over mutual
// TLS and returns its local broker's address once the link is up.
func startGateway(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	pki, err := certs.Init(certs.Options{Dir: filepath.Join(dir, "pki"), ServerNames: []string{"127.0.0.1"}, ClientNames: []string{"gw-01"}})
	if err != nil {
		b.Fatal(err)
	}
	up := mosquittotest.Start(b, mosquittotest.Options{CAFile: pki.CA.Cert, CertFile: pki.Server.Cert, KeyFile: pki.Server.Key})
	local := mosquittotest.FreePort(b)
	src := fmt.Sprintf(`[gateway]
id = "gw-01"
data_dir = %q
[broker]
listen = "127.0.0.1:%d"
[upstream]
address = "mqtts://%s"
%s
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = 1
`, filepath.Join(dir, "data"), local, up.Addr(), certs.GatewayTLSBlock(pki, "gw-01"))
	path := filepath.Join(dir, "gw.toml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	g, err := gateway.Build(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			b.Error("gateway did not stop within 20 s")
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := g.Status()
		if s.Ready && s.Bridge != nil && s.Bridge.LinkUp {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("gateway not ready with its link up within 20 s: %+v", s.Bridge)
		}
		time.Sleep(10 * time.Millisecond) // polling a status, bounded by the deadline
	}
	return fmt.Sprintf("127.0.0.1:%d", local)
}

// publisher is a raw MQTT 3.1.1 client: one PUBLISH, then its PUBACK.
type publisher struct {
	c  net.Conn
	br *bufio.Reader
	pk []byte // the PUBLISH, packet id at idOff
}

const idOff = 2 + 2 + len("readings/bench")

func dial(b *testing.B, addr string) *publisher {
	b.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	p := &publisher{c: c, br: bufio.NewReader(c)}
	connect := []byte{0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 4, 'b', 'n', 'c', 'h'}
	if _, err := c.Write(connect); err != nil {
		b.Fatal(err)
	}
	p.expect(b, connack)
	payload := make([]byte, 100)
	for i := range payload {
		payload[i] = 'x'
	}
	topic := "readings/bench"
	rem := 2 + len(topic) + 2 + len(payload)
	p.pk = append([]byte{0x32, byte(rem), 0, byte(len(topic))}, topic...)
	p.pk = append(p.pk, 0, 0)
	p.pk = append(p.pk, payload...)
	return p
}

// expect reads one packet and fails unless it is of type typ.
func (p *publisher) expect(b *testing.B, typ byte) {
	_ = p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	hb, err := p.br.ReadByte()
	if err != nil {
		b.Fatalf("want packet type %d: %v", typ, err)
	}
	n, err := remainingLength(p.br)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.br.Discard(n); err != nil {
		b.Fatal(err)
	}
	if hb>>4 != typ {
		b.Fatalf("got packet type %d, want %d", hb>>4, typ)
	}
}

// remainingLength reads an MQTT variable-length integer (at most 4 bytes).
func remainingLength(r io.ByteReader) (int, error) {
	n, shift := 0, 0
	for i := 0; i < 4; i++ {
		c, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		n |= int(c&0x7f) << shift
		if c&0x80 == 0 {
			return n, nil
		}
		shift += 7
	}
	return 0, fmt.Errorf("hotpath: remaining length longer than 4 bytes")
}

// MQTT control packet types the publisher reads.
const (
	connack = 2
	puback  = 4
)

func (p *publisher) publish(b *testing.B, id uint16) {
	p.pk[idOff], p.pk[idOff+1] = byte(id>>8), byte(id)
	if _, err := p.c.Write(p.pk); err != nil {
		b.Fatal(err)
	}
	p.expect(b, puback)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkQoS1RoundTrip sends one QoS 1 message at a time and waits for
// its local PUBACK, which the gateway sends once the upstream acknowledged
// it: every message wakes every goroutine on the path, as at the 20 and
// 200 msg/s a sensor publishes. It reports the process's CPU per message
// (cpu-µs/msg), allocations per message, and the round trip (ns/op).
func BenchmarkQoS1RoundTrip(b *testing.B) {
	addr := startGateway(b)
	p := dial(b, addr)
	for i := 0; i < 200; i++ { // warm up: TLS buffers, maps, pools
		p.publish(b, uint16(i%65535+1))
	}
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		p.publish(b, uint16(i%65535+1))
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

// BenchmarkQoS1Paced200 sends one QoS 1 message every 5 ms (200 msg/s, a
// sensor's rate), each after the previous one's PUBACK: between messages
// the gateway goes idle, so each one pays for waking it. cpu-µs/msg is
// comparable with make bench's CPU per message at 200 msg/s.
func BenchmarkQoS1Paced200(b *testing.B) {
	addr := startGateway(b)
	p := dial(b, addr)
	for i := 0; i < 200; i++ {
		p.publish(b, uint16(i%65535+1))
	}
	tick := time.NewTicker(5 * time.Millisecond) // the rate, not a synchronisation
	defer tick.Stop()
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		<-tick.C
		p.publish(b, uint16(i%65535+1))
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

// BenchmarkIdle measures what the connected gateway costs while nothing
// is published: each op is 100 ms of idleness (a measured span, not a
// synchronisation). cpu-µs/s is the process's CPU per second of it; at 20
// msg/s a sensor's message pays for 1/20 of that.
func BenchmarkIdle(b *testing.B) {
	addr := startGateway(b)
	p := dial(b, addr)
	for i := 0; i < 200; i++ {
		p.publish(b, uint16(i%65535+1))
	}
	time.Sleep(2 * time.Second) // let start-up's timers and the warm-up settle
	b.ResetTimer()
	c0, t0 := cpuTime(), time.Now()
	for i := 0; i < b.N; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-c0).Microseconds())/time.Since(t0).Seconds(), "cpu-µs/s")
}
