package broker

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// acceptAll is an interceptor that wants every topic and stores nothing.
type acceptAll struct{}

func (acceptAll) Wants(string) bool { return true }
func (acceptAll) Accept(_ Message, done func(error)) {
	if done != nil {
		done(nil)
	}
}

func startBroker(t *testing.T, o Options) *Broker {
	t.Helper()
	o.Listen = "127.0.0.1:0"
	o.AllowAnonymous = true
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func client(t *testing.T, b *Broker, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr("tcp").String()).SetClientID(id).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: connect: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

// TestInflightCountAfterBridgedQoS2: a bridged QoS 2 exchange (PUBLISH,
// PUBREC held back by the acker, PUBREL, PUBCOMP) leaves mochi's in-flight
// count where it was. The acker stored the PUBREC without counting it, and
// the PUBREL took one off: -1 per message.
func TestInflightCountAfterBridgedQoS2(t *testing.T) {
	for _, n := range []int{1, 25} {
		t.Run(fmt.Sprintf("%d messages", n), func(t *testing.T) {
			b := startBroker(t, Options{})
			b.SetInterceptor(acceptAll{})
			c := client(t, b, "q2")
			for i := range n {
				if tok := c.Publish("readings/x", 2, false, fmt.Sprint(i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					t.Fatalf("publish %d: %v", i, tok.Error())
				}
			}
			// mochi takes the last exchange off its count just after it
			// has queued the PUBCOMP the client already has: let it settle.
			deadline := time.Now().Add(2 * time.Second)
			for b.Stats().Inflight != 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if got := b.Stats().Inflight; got != 0 {
				t.Fatalf("in-flight count after %d completed QoS 2 exchanges = %d, want 0", n, got)
			}
		})
	}
}

// TestProtectedTopics: a network client cannot publish on a device's
// reading topic or a command topic (refused and counted, at QoS 0 and 1);
// the gateway's own Publish and the bridge's Deliver still reach local
// subscribers, and other topics stay open.
func TestProtectedTopics(t *testing.T) {
	b := startBroker(t, Options{Protect: Protect{Readings: []string{"readings/door"}, Commands: []string{"cmd/#", "relays/door/set"}}})
	var mu sync.Mutex
	got := map[string]int{}
	arrived := make(chan string, 64)
	sub := client(t, b, "watcher")
	if tok := sub.Subscribe("#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		got[m.Topic()+" "+string(m.Payload())]++
		mu.Unlock()
		arrived <- m.Topic() + " " + string(m.Payload())
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	cases := []struct {
		topic   string
		qos     byte
		refused bool
	}{
		{"readings/door", 0, true},
		{"readings/door", 1, true},
		{"cmd/relay", 0, true},
		{"relays/door/set", 1, true},
		{"readings/door/extra", 0, false},
		{"other", 1, false},
	}
	for i, tc := range cases {
		c := client(t, b, fmt.Sprintf("local-%d", i))
		tok := c.Publish(tc.topic, tc.qos, false, "forged")
		tok.WaitTimeout(2 * time.Second) // a refused QoS 1 ends the connection (MQTT 3.1.1)
	}
	if err := b.Publish(Message{Topic: "readings/door", Payload: []byte("own"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.Deliver(Message{Topic: "cmd/relay", Payload: []byte("down"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"readings/door/extra forged": true, "other forged": true, "readings/door own": true, "cmd/relay down": true}
	deadline := time.After(5 * time.Second)
	for len(want) > 0 {
		select {
		case m := <-arrived:
			delete(want, m)
		case <-deadline:
			t.Fatalf("not delivered: %v", want)
		}
	}
	// Each forger has its own connection: its publish may be checked after
	// the later ones arrived.
	deadline = time.After(2 * time.Second)
	st := b.Stats()
	for st.ForgedReadings+st.ForgedCommands < 4 {
		select {
		case <-deadline:
		case <-time.After(5 * time.Millisecond):
			st = b.Stats()
			continue
		}
		break
	}
	if st.ForgedReadings != 2 || st.ForgedCommands != 2 {
		t.Errorf("counted %d forged readings and %d forged commands, want 2 and 2", st.ForgedReadings, st.ForgedCommands)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, tc := range cases {
		if n := got[tc.topic+" forged"]; tc.refused && n != 0 {
			t.Errorf("forged %s (QoS %d) was delivered", tc.topic, tc.qos)
		}
	}
}

// TestRefusalReachesClientBeforeClose: writes are queued and the socket is
// closed by the connection's writer, so a CONNACK refusal mochi writes just
// before it closes the connection still reaches the client.
func TestRefusalReachesClientBeforeClose(t *testing.T) {
	b := startBroker(t, Options{})
	c, err := net.DialTimeout("tcp", b.Addr("tcp").String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// CONNECT with protocol level 9: refused with a CONNACK.
	if _, err := c.Write([]byte{0x10, 12, 0, 4, 'M', 'Q', 'T', 'T', 9, 2, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (got %x)", err, got)
	}
	if len(got) != 4 || !bytes.Equal(got[:3], []byte{0x20, 2, 0}) || got[3] == 0 {
		t.Fatalf("got %x before the close, want a CONNACK refusal (20 02 00 code)", got)
	}
}

// TestStalledSubscriberDropped is the broker-level twin of the end-to-end
// test (run here under -race): a subscriber to '#' that never reads is
// disconnected and counted, and a publisher's PUBACKs keep coming meanwhile.
func TestStalledSubscriberDropped(t *testing.T) {
	b := startBroker(t, Options{Limits: Limits{WriteTimeout: 500 * time.Millisecond, ClientQueue: 64 << 10, MaxPacketSize: 16 << 10}})
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	s, err := d.Dial("tcp", b.Addr("tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	connect := []byte{0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 5, 's', 't', 'a', 'l', 'l'}
	subscribe := []byte{0x82, 6, 0, 1, 0, 1, '#', 1}
	if _, err := s.Write(append(connect, subscribe...)); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4+5)
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s, ack); err != nil || ack[0] != 0x20 || ack[4] != 0x90 {
		t.Fatalf("CONNACK and SUBACK: %x, %v", ack, err)
	}
	// From here on the subscriber reads nothing.
	pub := client(t, b, "publisher")
	payload := bytes.Repeat([]byte("p"), 1024)
	for i := range 3000 {
		if tok := pub.Publish("load/x", 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("message %d: no PUBACK within 5s (%v) with a stalled subscriber", i, tok.Error())
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().SlowClientsDropped == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := b.Stats().SlowClientsDropped; n != 1 {
		t.Fatalf("slow clients dropped = %d, want 1", n)
	}
}

// TestMochiLogsNoPacketDumps: a refused publish makes mochi log "error
// processing packet" with the whole packet; the payload must not reach the
// log (it may be a secret, and a client could fill the journal with it).
func TestMochiLogsNoPacketDumps(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	b := startBroker(t, Options{
		Protect: Protect{Readings: []string{"readings/door"}},
		Logger:  slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil)),
	})
	c := client(t, b, "forger")
	c.Publish("readings/door", 1, false, "s3cret-payload").WaitTimeout(2 * time.Second)
	deadline := time.Now().Add(2 * time.Second)
	for b.Stats().ForgedReadings == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	_ = b.Close() // mochi has logged what it logs for the connection
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Contains(logs.Bytes(), []byte("error processing packet")) {
		t.Fatalf("mochi's line is missing; logs:\n%s", logs.String())
	}
	if bytes.Contains(logs.Bytes(), []byte("s3cret")) || bytes.Contains(logs.Bytes(), []byte("pk=")) {
		t.Fatalf("a packet dump reached the log:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
