package broker

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// laterBox completes each message on its own goroutine, in order, as the
// outbox does on an upstream PUBACK; with sync it completes inside Accept;
// with mixed, every other message inside Accept when nothing is pending
// (so the acker's queue and the completing goroutine take turns).
type laterBox struct {
	sync, mixed bool
	hold        *Broker // set: each drain holds the broker's acknowledgements (as the bridge's reader does)

	mu      sync.Mutex
	pending []func(error)
	flip    bool
	wake    chan struct{}
}

func (*laterBox) Wants(string) bool { return true }
func (l *laterBox) Accept(_ Message, done func(error)) {
	if done == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flip = !l.flip
	if l.sync || (l.mixed && l.flip && len(l.pending) == 0) {
		done(nil)
		return
	}
	l.pending = append(l.pending, done)
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *laterBox) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-l.wake:
		}
		if l.hold != nil {
			l.hold.HoldAcks()
		}
		for {
			l.mu.Lock()
			if len(l.pending) == 0 {
				l.mu.Unlock()
				break
			}
			done := l.pending[0]
			l.pending = l.pending[1:]
			done(nil) // under mu: in Accept order with those completed inside Accept
			l.mu.Unlock()
		}
		if l.hold != nil {
			l.hold.ReleaseAcks()
		}
	}
}

// TestAcksInOrder: a local publisher's QoS 1 messages get their PUBACKs in
// order, and a local subscriber gets the messages in order, whether the
// interceptor completes them inside Accept (queued for the acker), one by
// one from another goroutine (processed there while the acker is idle), or
// in bursts (some processed there, the rest queued while it is busy).
func TestAcksInOrder(t *testing.T) {
	cases := []struct {
		name        string
		sync, mixed bool
		burst       int // messages written before reading any PUBACK
		held        bool
	}{
		{"completed inside Accept", true, false, 1, false},
		{"completed later, one at a time", false, false, 1, false},
		{"completed later, in bursts", false, false, 200, false},
		{"inside Accept and later, in turns", false, true, 200, false},
		{"completed later, in bursts, each held and released", false, false, 200, true},
		{"inside Accept and later, in turns, held and released", false, true, 200, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			box := &laterBox{sync: tc.sync, mixed: tc.mixed, wake: make(chan struct{}, 1)}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); box.run(stop) }()
			t.Cleanup(func() { close(stop); wg.Wait() })
			b := startBroker(t, Options{})
			if tc.held {
				box.hold = b
			}
			b.SetInterceptor(box)
			const n = 600
			got := make(chan string, n)
			sub := client(t, b, "sub")
			if tok := sub.Subscribe("r/#", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			c, br := rawConnect(t, b)
			for i := 1; i <= n; i += tc.burst {
				for j := i; j < i+tc.burst && j <= n; j++ {
					payload := fmt.Sprintf("%04d", j)
					pk := []byte{0x32, byte(2 + 3 + 2 + len(payload)), 0, 3, 'r', '/', 'a', byte(j >> 8), byte(j)}
					if _, err := c.Write(append(pk, payload...)); err != nil {
						t.Fatal(err)
					}
				}
				for j := i; j < i+tc.burst && j <= n; j++ {
					ack := readN(t, br, 4)
					if ack[0] != 0x40 || int(ack[2])<<8|int(ack[3]) != j {
						t.Fatalf("got %x, want the PUBACK of packet %d", ack, j)
					}
				}
			}
			for j := 1; j <= n; j++ {
				select {
				case p := <-got:
					if want := fmt.Sprintf("%04d", j); p != want {
						t.Fatalf("subscriber got %s, want %s", p, want)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("subscriber got %d of %d messages", j-1, n)
				}
			}
		})
	}
}

func readN(t *testing.T, br *bufio.Reader, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	for i := range p {
		c, err := br.ReadByte()
		if err != nil {
			t.Fatalf("read: %v after %x", err, p[:i])
		}
		p[i] = c
	}
	return p
}

// TestHoldAcks: completions made while the acknowledgements are held are
// not written until ReleaseAcks, which writes them all, in order; nested
// holds release at the last.
func TestHoldAcks(t *testing.T) {
	box := &laterBox{wake: make(chan struct{}, 1)}
	b := startBroker(t, Options{})
	b.SetInterceptor(box)
	c, br := rawConnect(t, b)
	const n = 50
	for j := 1; j <= n; j++ {
		pk := []byte{0x32, 2 + 3 + 2 + 1, 0, 3, 'r', '/', 'a', byte(j >> 8), byte(j), 'x'}
		if _, err := c.Write(pk); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		box.mu.Lock()
		got := len(box.pending)
		box.mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages accepted within 10 s", got, n)
		}
		time.Sleep(time.Millisecond) // polling the interceptor, bounded
	}
	b.HoldAcks()
	b.HoldAcks()
	box.mu.Lock()
	for _, done := range box.pending {
		done(nil)
	}
	box.pending = nil
	box.mu.Unlock()
	b.ReleaseAcks() // still held once
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if k, err := br.ReadByte(); err == nil {
		t.Fatalf("got byte %#x while the acknowledgements were held", k)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b.ReleaseAcks()
	for j := 1; j <= n; j++ {
		ack := readN(t, br, 4)
		if ack[0] != 0x40 || int(ack[2])<<8|int(ack[3]) != j {
			t.Fatalf("got %x, want the PUBACK of packet %d", ack, j)
		}
	}
}

// rawConnect opens a TCP connection to the broker and completes an MQTT
// 3.1.1 CONNECT (client id "p", clean session) by hand, so a test can
// write and read packets byte by byte; the connection closes with the test.
func rawConnect(t *testing.T, b *Broker) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", b.Addr("tcp").String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	if _, err := c.Write([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 1, 'p'}); err != nil {
		t.Fatal(err)
	}
	if ca := readN(t, br, 4); ca[0] != 0x20 || ca[3] != 0 {
		t.Fatalf("CONNACK %x", ca)
	}
	return c, br
}
