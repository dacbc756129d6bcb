package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// TestMochiVersion: the adapter names the mochi release it was written
// against; building with another one fails here until someone has checked
// the internals mochi.go lists and moved the constant. The version comes
// from runtime/debug.ReadBuildInfo: the test binary's own when it lists
// dependencies, else that of a small program built from this module
// (testdata/mochiversion), which links what the edgegw binary links.
func TestMochiVersion(t *testing.T) {
	v, ok := buildInfoVersion(mochiPath)
	if !ok {
		goTool := goCommand(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, goTool, "run", "./testdata/mochiversion").Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("go run ./testdata/mochiversion: %v: %s", err, ee.Stderr)
			}
			t.Fatalf("go run ./testdata/mochiversion: %v", err)
		}
		v = strings.TrimSpace(string(out))
	}
	if v != mochiVersion {
		t.Fatalf("%s is %s, but broker/mochi.go was written against %s: check every internal it lists against the new release, run TestMochiAdapter, then update mochiVersion", mochiPath, v, mochiVersion)
	}
}

const mochiPath = "github.com/mochi-mqtt/server/v2"

// goCommand is the go command, for tests that ask it about the module.
func goCommand(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no go command on PATH: %v", err)
		}
		t.Skipf("no go command on PATH (%v): put Go's bin directory on PATH to run this check", err)
	}
	return goTool
}

// TestOnlyBrokerImportsMochi keeps the package doc true: broker imports
// mochi's server, bridge only its packets codec, and no other package of
// the module (tests included) imports mochi at all.
func TestOnlyBrokerImportsMochi(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goCommand(t), "list", "-f",
		`{{.ImportPath}}{{range .Imports}} {{.}}{{end}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}`,
		"github.com/edgegw/edgegw/...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/edgegw/edgegw/"
	allowed := map[string]func(imp string) bool{
		mod + "broker": func(string) bool { return true },
		mod + "bridge": func(imp string) bool { return imp == mochiPath+"/packets" },
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 10 {
		t.Fatalf("go list named only %d packages:\n%s", len(lines), out)
	}
	for _, line := range lines {
		f := strings.Fields(line)
		for _, imp := range f[1:] {
			if imp != mochiPath && !strings.HasPrefix(imp, mochiPath+"/") {
				continue
			}
			if ok := allowed[f[0]]; ok == nil || !ok(imp) {
				t.Errorf("%s imports %s: only broker may import mochi's server and bridge its packets codec (see the broker package doc)", f[0], imp)
			}
		}
	}
}

// buildInfoVersion is the version of module path in this binary's build
// information (false when it is not listed).
func buildInfoVersion(path string) (string, bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", false
	}
	for _, d := range bi.Deps {
		if d.Path == path {
			if d.Replace != nil {
				d = d.Replace
			}
			return d.Version, true
		}
	}
	return "", false
}

// holdAll is an interceptor that wants every topic and hands each message
// and its completion to the test.
type holdAll struct{ ch chan held }

type held struct {
	m    Message
	done func(error)
}

func (h holdAll) Wants(string) bool { return true }
func (h holdAll) Accept(m Message, done func(error)) {
	h.ch <- held{m, done}
}

func (h holdAll) next(t *testing.T) held {
	t.Helper()
	select {
	case x := <-h.ch:
		return x
	case <-time.After(5 * time.Second):
		t.Fatal("the interceptor was not offered the message within 5s")
		return held{}
	}
}

// rawClient is a network client that speaks MQTT byte by byte.
type rawClient struct {
	t    *testing.T
	c    net.Conn
	read uint64 // bytes received
}

func dialRaw(t *testing.T, b *Broker) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.Addr("tcp").String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c}
}

func (r *rawClient) send(p ...byte) {
	r.t.Helper()
	if _, err := r.c.Write(p); err != nil {
		r.t.Fatalf("write %x: %v", p, err)
	}
}

// packet reads one packet: its first header byte and its body.
func (r *rawClient) packet() (byte, []byte, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hb [1]byte
	if _, err := io.ReadFull(r.c, hb[:]); err != nil {
		return 0, nil, err
	}
	n, shift, lenBytes := 0, 0, 0
	for {
		var b [1]byte
		if _, err := io.ReadFull(r.c, b[:]); err != nil {
			return 0, nil, err
		}
		lenBytes++
		n |= int(b[0]&0x7f) << shift
		if b[0] < 0x80 {
			break
		}
		shift += 7
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r.c, body); err != nil {
		return 0, nil, err
	}
	r.read += uint64(1 + lenBytes + n)
	return hb[0], body, nil
}

// expect reads one packet and fails unless it is the one given (header
// byte, then body; a nil body matches any).
func (r *rawClient) expect(what string, hb byte, body []byte) []byte {
	r.t.Helper()
	gh, gb, err := r.packet()
	if err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
	if gh != hb || (body != nil && !bytes.Equal(gb, body)) {
		r.t.Fatalf("%s: got %02x %x, want %02x %x", what, gh, gb, hb, body)
	}
	return gb
}

// expectClosed fails unless the broker closes the connection next.
func (r *rawClient) expectClosed(what string) {
	r.t.Helper()
	if hb, body, err := r.packet(); !errors.Is(err, io.EOF) {
		r.t.Fatalf("%s: want the connection closed, got %02x %x (%v)", what, hb, body, err)
	}
}

func connect311(id string) []byte {
	p := []byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, byte(len(id))}
	return append(p, id...)
}

func connect5(id string) []byte {
	p := []byte{0x10, byte(13 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 60, 0, 0, byte(len(id))}
	return append(p, id...)
}

// publish encodes a PUBLISH (MQTT 3.1.1; props adds MQTT 5's empty
// property list).
func publish(qos byte, id uint16, topic, payload string, props bool) []byte {
	var v []byte
	v = append(v, 0, byte(len(topic)))
	v = append(v, topic...)
	if qos > 0 {
		v = append(v, byte(id>>8), byte(id))
	}
	if props {
		v = append(v, 0)
	}
	v = append(v, payload...)
	return append([]byte{0x30 | qos<<1, byte(len(v))}, v...)
}

func subscribe(id uint16, filter string) []byte {
	v := []byte{byte(id >> 8), byte(id), 0, byte(len(filter))}
	v = append(v, filter...)
	v = append(v, 0)
	return append([]byte{0x82, byte(len(v))}, v...)
}

var pingreq = []byte{0xc0, 0}

// TestMochiAdapter checks, against the real embedded server, each thing
// mochi.go relies on that a mochi upgrade could change without breaking the
// build.
func TestMochiAdapter(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a rejected QoS 1 PUBLISH is not acknowledged by mochi; the held-back PUBACK goes out on done", func(t *testing.T) {
			h := holdAll{ch: make(chan held, 4)}
			b := startBroker(t, Options{})
			b.SetInterceptor(h)
			c := dialRaw(t, b)
			c.send(connect311("q1")...)
			c.expect("CONNACK", 0x20, []byte{0, 0})
			c.send(publish(1, 7, "readings/x", "p", false)...)
			c.send(pingreq...)
			x := h.next(t)
			if x.done == nil || x.m.Origin != "q1" || x.m.PacketID != 7 || x.m.Topic != "readings/x" {
				t.Fatalf("interceptor got %+v (done set: %v), want readings/x id 7 from q1 with a done", x.m, x.done != nil)
			}
			// mochi handles a client's packets in order: had it
			// acknowledged the PUBLISH, the PUBACK would come first.
			c.expect("PINGRESP before any PUBACK", 0xd0, []byte{})
			x.done(nil)
			c.expect("PUBACK", 0x40, []byte{0, 7})
		}},
		{"a held-back PUBREC is found by the PUBREL, which gets its PUBCOMP; the in-flight count returns to 0", func(t *testing.T) {
			for _, v5 := range []bool{false, true} {
				h := holdAll{ch: make(chan held, 4)}
				b := startBroker(t, Options{})
				b.SetInterceptor(h)
				c := dialRaw(t, b)
				if v5 {
					c.send(connect5("q2")...)
					c.expect("CONNACK", 0x20, nil)
				} else {
					c.send(connect311("q2")...)
					c.expect("CONNACK", 0x20, []byte{0, 0})
				}
				c.send(publish(2, 9, "readings/x", "p", v5)...)
				h.next(t).done(nil)
				c.expect("PUBREC", 0x50, []byte{0, 9})
				if n := b.Stats().Inflight; n != 1 {
					t.Fatalf("MQTT 5 %v: in-flight count after the PUBREC = %d, want 1", v5, n)
				}
				c.send(0x62, 2, 0, 9)
				// MQTT 5 would add reason 0x92 (packet id not found)
				// had mochi not found the PUBREC.
				c.expect("PUBCOMP", 0x70, []byte{0, 9})
				c.send(pingreq...) // PUBREL fully handled once this is answered
				c.expect("PINGRESP", 0xd0, []byte{})
				if n := b.Stats().Inflight; n != 0 {
					t.Fatalf("MQTT 5 %v: in-flight count after the exchange = %d, want 0", v5, n)
				}
			}
		}},
		{"every byte a client receives went through its guardConn, which mochi keeps as Net.Conn", func(t *testing.T) {
			b := startBroker(t, Options{})
			b.SetInterceptor(acceptAll{})
			c := dialRaw(t, b)
			c.send(connect311("w1")...)
			c.expect("CONNACK", 0x20, []byte{0, 0})
			c.send(subscribe(1, "t/x")...)
			c.expect("SUBACK", 0x90, []byte{0, 1, 0})
			if err := b.Publish(Message{Topic: "t/x", Payload: []byte("hello")}); err != nil {
				t.Fatal(err)
			}
			c.expect("PUBLISH routed by mochi", 0x30, append([]byte{0, 3, 't', '/', 'x'}, "hello"...))
			c.send(publish(1, 3, "readings/x", "p", false)...)
			c.expect("PUBACK written by the acker", 0x40, []byte{0, 3})
			c.send(pingreq...)
			c.expect("PINGRESP", 0xd0, []byte{})
			cl, ok := b.srv.Clients.Get("w1")
			if !ok {
				t.Fatal("mochi does not know client w1")
			}
			g, ok := clientConn(cl).(*guardConn)
			if !ok {
				t.Fatalf("mochi's Net.Conn is a %T, not the guardConn the listener handed it", clientConn(cl))
			}
			if !g.connected.Load() {
				t.Error("mochi never called SetDeadline after the CONNECT: connect_timeout would close a connected client")
			}
			if got := g.accepted(); got != c.read {
				t.Fatalf("guardConn queued %d bytes, the client received %d: mochi writes past the wrapper", got, c.read)
			}
		}},
		{"mochi sets no deadline before a CONNECT: a silent socket is closed at connect_timeout and counted", func(t *testing.T) {
			b := startBroker(t, Options{Limits: Limits{ConnectTimeout: 200 * time.Millisecond}})
			c := dialRaw(t, b)
			c.expectClosed("silent socket")
			if n := b.Stats().ConnectTimeouts; n != 1 {
				t.Fatalf("connect timeouts = %d, want 1", n)
			}
		}},
		{"a refused message disconnects an MQTT 5 publisher with quota exceeded (0x97)", func(t *testing.T) {
			h := holdAll{ch: make(chan held, 4)}
			b := startBroker(t, Options{})
			b.SetInterceptor(h)
			c := dialRaw(t, b)
			c.send(connect5("c5")...)
			if body := c.expect("CONNACK", 0x20, nil); len(body) < 2 || body[1] != 0 {
				t.Fatalf("CONNACK %x: refused", body)
			}
			c.send(publish(1, 5, "readings/x", "p", true)...)
			h.next(t).done(errors.New("outbox full"))
			if body := c.expect("DISCONNECT", 0xe0, nil); len(body) == 0 || body[0] != 0x97 {
				t.Fatalf("DISCONNECT reason %x, want 97 (quota exceeded)", body)
			}
			c.expectClosed("after the DISCONNECT")
		}},
		{"a packet over max_packet_size ends the connection with mochi's packet-too-large error", func(t *testing.T) {
			b := startBroker(t, Options{Limits: Limits{MaxPacketSize: 1024}})
			c := dialRaw(t, b)
			c.send(connect311("big")...)
			c.expect("CONNACK", 0x20, []byte{0, 0})
			c.send(0x30, 0x80, 0x80, 0x04) // announces 64 KiB
			c.expectClosed("oversized PUBLISH")
			// Counted just after mochi returns, which is after it closed.
			deadline := time.Now().Add(5 * time.Second)
			for b.Stats().OversizedPackets == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := b.Stats().OversizedPackets; n != 1 {
				t.Fatalf("oversized packets = %d, want 1", n)
			}
		}},
		{"an injected PUBLISH (Deliver) reaches a network subscriber at QoS 0 and 1", func(t *testing.T) {
			b := startBroker(t, Options{})
			c := dialRaw(t, b)
			c.send(connect311("d1")...)
			c.expect("CONNACK", 0x20, []byte{0, 0})
			c.send(subscribe(1, "cmd/#")...)
			c.expect("SUBACK", 0x90, []byte{0, 1, 0})
			if err := b.Deliver(Message{Topic: "cmd/a", Payload: []byte("0")}); err != nil {
				t.Fatalf("QoS 0: %v", err)
			}
			c.expect("QoS 0 PUBLISH", 0x30, []byte{0, 5, 'c', 'm', 'd', '/', 'a', '0'})
			// The subscription is QoS 0, so mochi sends the QoS 1 message at 0.
			if err := b.Deliver(Message{Topic: "cmd/b", Payload: []byte("1"), QoS: 1}); err != nil {
				t.Fatalf("QoS 1: %v", err)
			}
			c.expect("QoS 1 PUBLISH downgraded", 0x30, []byte{0, 5, 'c', 'm', 'd', '/', 'b', '1'})
		}},
		{"Topics.Subscribers sees network, shared and in-process subscriptions", func(t *testing.T) {
			b := startBroker(t, Options{})
			cancel, err := b.Subscribe("h/inline/#", func(Message) {})
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			c := dialRaw(t, b)
			c.send(connect311("s1")...)
			c.expect("CONNACK", 0x20, []byte{0, 0})
			c.send(subscribe(1, "h/net")...)
			c.expect("SUBACK", 0x90, []byte{0, 1, 0})
			c.send(subscribe(2, "$share/g/h/shared")...)
			c.expect("SUBACK", 0x90, []byte{0, 2, 0})
			for topic, want := range map[string]bool{"h/none": false, "h/inline/x": true, "h/net": true, "h/shared": true} {
				if got := hasSubscribers(b.srv, topic); got != want {
					t.Errorf("hasSubscribers(%q) = %v, want %v", topic, got, want)
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.run)
	}
}

// TestMochiStatsCounters: the counters read from mochi's Info move with
// what a client does.
func TestMochiStatsCounters(t *testing.T) {
	b := startBroker(t, Options{})
	c := dialRaw(t, b)
	c.send(connect311("st")...)
	c.expect("CONNACK", 0x20, []byte{0, 0})
	c.send(subscribe(1, "s/#")...)
	c.expect("SUBACK", 0x90, []byte{0, 1, 0})
	c.send(publish(0, 0, "s/x", "v", false)...)
	c.expect("own PUBLISH back", 0x30, nil)
	c.send(pingreq...)
	c.expect("PINGRESP", 0xd0, []byte{})
	st := b.Stats()
	got := fmt.Sprintf("clients=%d received=%d sent=%d subscriptions=%d", st.Clients, st.MessagesReceived, st.MessagesSent, st.Subscriptions)
	if want := "clients=1 received=1 sent=1 subscriptions=1"; got != want {
		t.Fatalf("stats %s, want %s", got, want)
	}
}
