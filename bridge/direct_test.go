package bridge

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestDirectSends: messages accepted while the link keeps up are sent from
// the accepting goroutine (direct.go) when the sender waits, and the wire
// still has the outbox's order per topic, the window (the server's Receive
// Maximum) holds, nothing is lost or sent twice; what a direct send may not
// take (over its byte bound, window full) goes by the sender.
func TestDirectSends(t *testing.T) {
	cases := []struct {
		name       string
		receiveMax uint16 // 0: none announced
		holdAcks   int    // acknowledge only when this many are outstanding (or the bridge is quiet); 0: at once
		publishers int
		each       int
		payload    int
		wait       bool // each publisher waits for a message's completion before the next
		// direct is how many messages direct sends must have sent: -1 all,
		// 0 none, 1 some.
		direct int
	}{
		{name: "one publisher at a sensor's pace: every message sent directly", publishers: 1, each: 200, payload: 100, wait: true, direct: -1},
		{name: "four publishers at once, receive maximum 3, acks held until the window is full", receiveMax: 3, holdAcks: 3, publishers: 4, each: 150, payload: 100, direct: 1},
		{name: "four publishers at once, acks at once", publishers: 4, each: 300, payload: 100, direct: 1},
		{name: "payload over the direct bound goes by the sender", publishers: 1, each: 20, payload: directMaxInflight + 1, wait: true, direct: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBroker(t)
			b, ob, _ := testBridge(t, fb.ln.Addr().String(), 5, func(o *Options) {
				o.Rules = []Rule{{Pattern: "r/#", Direction: Out, QoS: 1}}
			})
			if !b.direct {
				t.Fatal("direct sends are off")
			}
			fc := acceptUp(t, fb, b, tc.receiveMax)
			total := tc.publishers * tc.each
			pad := strings.Repeat("x", tc.payload)

			type got struct{ topic, payload string }
			arrived := make(chan got, total)
			serveErr := make(chan error, 1)
			maxOut := 0
			go func() {
				var held []uint16
				ack := func(id uint16) error {
					return fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
				}
				out := map[uint16]bool{}
				for n := 0; n < total; {
					_ = fc.nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
					pk, err := fc.read()
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						// The bridge is quiet: let the held ones go.
						for _, id := range held {
							delete(out, id)
							if err := ack(id); err != nil {
								serveErr <- err
								return
							}
						}
						held = held[:0]
						continue
					}
					if err != nil {
						serveErr <- err
						return
					}
					if pk.FixedHeader.Type != packets.Publish {
						continue
					}
					if out[pk.PacketID] {
						serveErr <- fmt.Errorf("packet id %d sent again while in flight", pk.PacketID)
						return
					}
					out[pk.PacketID] = true
					maxOut = max(maxOut, len(out))
					n++
					arrived <- got{pk.TopicName, string(pk.Payload)}
					held = append(held, pk.PacketID)
					if len(held) >= tc.holdAcks {
						for _, id := range held {
							delete(out, id)
							if err := ack(id); err != nil {
								serveErr <- err
								return
							}
						}
						held = held[:0]
					}
				}
				serveErr <- nil
			}()

			var wg sync.WaitGroup
			errs := make(chan error, total)
			for p := 0; p < tc.publishers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					topic := fmt.Sprintf("r/%d", p)
					for i := 0; i < tc.each; i++ {
						if tc.wait {
							// A sensor's pace: the sender is back waiting in
							// Next (after the last completion woke it, say)
							// before the next reading, as it is when readings
							// are milliseconds apart; bounded.
							for deadline := time.Now().Add(5 * time.Second); !ob.ReaderWaiting(); {
								if time.Now().After(deadline) {
									errs <- fmt.Errorf("%s message %d: the sender not waiting in Next within 5 s", topic, i)
									return
								}
								time.Sleep(100 * time.Microsecond) // polling a state, bounded
							}
						}
						done := make(chan struct{})
						b.Accept(Message{Topic: topic, Payload: []byte(strconv.Itoa(i) + " " + pad), QoS: 1, Origin: topic, PacketID: uint16(i + 1)}, func(err error) {
							errs <- err
							close(done)
						})
						if tc.wait {
							select {
							case <-done:
							case <-time.After(10 * time.Second):
								errs <- fmt.Errorf("%s message %d not completed within 10 s", topic, i)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			for i := 0; i < total; i++ {
				select {
				case err := <-errs:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(20 * time.Second):
					t.Fatalf("%d of %d messages completed within 20 s", i, total)
				}
			}
			if err := <-serveErr; err != nil {
				t.Fatal(err)
			}
			close(arrived)
			next := map[string]int{}
			for g := range arrived {
				i, _ := strconv.Atoi(strings.Fields(g.payload)[0])
				if i != next[g.topic] {
					t.Fatalf("%s: message %d arrived where %d was due", g.topic, i, next[g.topic])
				}
				next[g.topic]++
			}
			if tc.receiveMax > 0 && maxOut > int(tc.receiveMax) {
				t.Errorf("%d messages in flight at once, over the server's Receive Maximum %d", maxOut, tc.receiveMax)
			}
			d := int(b.directSent.Load())
			switch {
			case tc.direct < 0 && d != total:
				t.Errorf("%d of %d messages sent directly, want all", d, total)
			case tc.direct == 0 && d != 0:
				t.Errorf("%d messages sent directly, want none", d)
			case tc.direct > 0 && (d == 0 || d == total && tc.holdAcks > 0):
				t.Errorf("%d of %d messages sent directly, want some, not all", d, total)
			}
			t.Logf("%d of %d sent directly; at most %d in flight", d, total, maxOut)
		})
	}
}

// recBatch is a Batcher that records whether it is held.
type recBatch struct {
	mu              sync.Mutex
	held            int
	holds, releases int
}

func (r *recBatch) Hold() {
	r.mu.Lock()
	r.held++
	r.holds++
	r.mu.Unlock()
}

func (r *recBatch) Release() {
	r.mu.Lock()
	r.held--
	r.releases++
	r.mu.Unlock()
}

// TestBatchedCompletions: the PUBACKs of one read from the upstream
// connection complete their messages inside one Hold/Release of
// Options.Batch, and the hold is released before the reader reads again.
func TestBatchedCompletions(t *testing.T) {
	fb := newFakeBroker(t)
	rb := &recBatch{}
	b, _, _ := testBridge(t, fb.ln.Addr().String(), 4, func(o *Options) {
		o.Rules = []Rule{{Pattern: "r/#", Direction: Out, QoS: 1}}
		o.Batch = rb
	})
	fc := acceptUp(t, fb, b, 0)
	const n = 10
	held := make(chan bool, n)
	for i := 0; i < n; i++ {
		b.Accept(Message{Topic: "r/a", Payload: []byte{byte('0' + i)}, QoS: 1, Origin: "p", PacketID: uint16(i + 1)}, func(err error) {
			rb.mu.Lock()
			held <- rb.held > 0 && err == nil
			rb.mu.Unlock()
		})
	}
	var acks []byte
	for i := 0; i < n; i++ {
		pk, err := fc.read()
		if err != nil {
			t.Fatal(err)
		}
		if pk.FixedHeader.Type != packets.Publish {
			t.Fatalf("got packet type %d, want PUBLISH", pk.FixedHeader.Type)
		}
		acks = append(acks, packets.Puback<<4, 2, byte(pk.PacketID>>8), byte(pk.PacketID))
	}
	if _, err := fc.nc.Write(acks); err != nil { // all ten in one write
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		select {
		case h := <-held:
			if !h {
				t.Fatalf("message %d completed outside a hold (or with an error)", i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d messages completed within 10 s", i, n)
		}
	}
	// The reader releases before it reads again: it is reading now.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rb.mu.Lock()
		h, holds, rel := rb.held, rb.holds, rb.releases
		rb.mu.Unlock()
		if h == 0 {
			if holds >= n || holds != rel {
				t.Fatalf("%d holds, %d releases for %d completions of one read", holds, rel, n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reader still holds after the completions")
		}
		time.Sleep(time.Millisecond) // polling, bounded by the deadline
	}
}

// acceptUp takes the bridge's next connection to the fake broker, answers
// its CONNECT with a CONNACK announcing receiveMax (0: none) and waits,
// bounded, until the bridge says its link is up.
func acceptUp(t *testing.T, fb *fakeBroker, b *Bridge, receiveMax uint16) *fakeConn {
	t.Helper()
	fc := fb.next(t, 10*time.Second)
	if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, Properties: packets.Properties{ReceiveMaximum: receiveMax}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !b.Stats().LinkUp {
		if time.Now().After(deadline) {
			t.Fatal("link not up within 10 s")
		}
		time.Sleep(time.Millisecond) // polling a status, bounded
	}
	return fc
}
