package bridge

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestServerLimits: what an MQTT 5 server says in its CONNACK and its
// PUBACK/PUBREC reason codes is honoured, against a scripted server.
func TestServerLimits(t *testing.T) {
	big := strings.Repeat("x", 300)
	cases := []struct {
		name     string
		props    packets.Properties
		qos      byte
		payloads []string
		// refuse gives the reason code for a payload on connection n (0 = take it).
		refuse func(conn int, payload string) byte
		// holdAcks acknowledges only when this many are unacknowledged (the
		// window is full) or everything has arrived; 0 = at once.
		holdAcks int
		// taken are the payloads the server must end up accepting, in order.
		taken    []string
		dead     []byte // reason codes of the dead letters
		connects int
		opts     func(*Options)
	}{
		{name: "over max_payload (a profile's limit) goes to the dead-letter store unsent", qos: 1,
			opts:     func(o *Options) { o.MaxPayload = 100 },
			payloads: []string{"1", big, "3"}, taken: []string{"1", "3"}, dead: []byte{0x95}, connects: 1},
		{name: "receive maximum 3 is the window", props: packets.Properties{ReceiveMaximum: 3}, qos: 1,
			payloads: []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}, holdAcks: 3,
			taken: []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}, connects: 1},
		{name: "over maximum packet size goes to the dead-letter store unsent", props: packets.Properties{MaximumPacketSize: 100}, qos: 1,
			payloads: []string{"1", big, "3"}, taken: []string{"1", "3"}, dead: []byte{0x95}, connects: 1},
		{name: "not authorized (0x87) is permanent: dead letter, the rest goes on", qos: 1,
			payloads: []string{"1", "2", "3"}, refuse: func(_ int, p string) byte { return map[string]byte{"2": 0x87}[p] },
			taken: []string{"1", "3"}, dead: []byte{0x87}, connects: 1},
		{name: "topic name invalid (0x90) on PUBREC of QoS 2 is permanent", qos: 2,
			payloads: []string{"1", "2", "3"}, refuse: func(_ int, p string) byte { return map[string]byte{"2": 0x90}[p] },
			taken: []string{"1", "3"}, dead: []byte{0x90}, connects: 1},
		{name: "quota exceeded (0x97) is transient: back off and send it again", qos: 1,
			payloads: []string{"1", "2", "3"}, refuse: func(conn int, p string) byte {
				if conn == 0 && p != "1" {
					return 0x97 // the quota is used up: this one and all after
				}
				return 0
			},
			taken: []string{"1", "2", "3"}, connects: 2},
		{name: "a message refused as busy (0x89) again and again is kept aside, not retried for ever", qos: 1,
			payloads: []string{"1", "2", "3"}, refuse: func(_ int, p string) byte { return map[string]byte{"2": 0x89}[p] },
			taken: []string{"1", "3"}, dead: []byte{0x89}, connects: maxTransientRefusals},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBroker(t)
			b, ob, dl := testBridge(t, fb.ln.Addr().String(), 5, tc.opts)
			appendN(t, ob, "r/t", tc.qos, tc.payloads...)
			var taken []string
			accepted := map[string]bool{}
			maxOut := 0
			start := time.Now()
			finished := func() bool { return len(taken) >= len(tc.taken) && ob.Stats().Messages == 0 }
			for conn := 0; !finished(); conn++ {
				if conn > 10 {
					t.Fatalf("more than 10 connections; taken so far %v", taken)
				}
				fc := fb.next(t, 10*time.Second)
				props := tc.props
				if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, Properties: props}); err != nil {
					t.Fatal(err)
				}
				var held []uint16
				arrived := map[uint16]string{}
				for !finished() {
					if len(taken) >= len(tc.taken) {
						// Everything is in: serve what follows (PUBREL, a
						// reconnect) until the outbox is empty.
						_ = fc.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					}
					pk, err := fc.read()
					if err != nil {
						var ne net.Error
						if errors.As(err, &ne) && ne.Timeout() {
							if len(taken) >= len(tc.taken) && time.Since(start) < 30*time.Second {
								continue
							}
							t.Fatalf("connection %d: nothing from the bridge; taken %v", conn, taken)
						}
						break // the bridge closed: next connection
					}
					switch pk.FixedHeader.Type {
					case packets.Publish:
						p := string(pk.Payload)
						if p == big {
							t.Fatalf("a %d-byte payload was sent (maximum packet size %d, max payload set: %v)", len(p), tc.props.MaximumPacketSize, tc.opts != nil)
						}
						rc := byte(0)
						if tc.refuse != nil {
							rc = tc.refuse(conn, p)
						}
						if rc == 0 && !accepted[p] {
							accepted[p] = true
							taken = append(taken, p)
						}
						if pk.FixedHeader.Qos == 2 {
							if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: pk.PacketID, ReasonCode: rc}); err != nil {
								t.Fatal(err)
							}
							continue
						}
						if rc != 0 || tc.holdAcks == 0 {
							if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID, ReasonCode: rc}); err != nil {
								t.Fatal(err)
							}
							continue
						}
						arrived[pk.PacketID] = p
						held = append(held, pk.PacketID)
						maxOut = max(maxOut, len(held))
						if len(held) > tc.holdAcks {
							t.Fatalf("%d messages in flight with receive maximum %d", len(held), tc.holdAcks)
						}
						if len(held) == tc.holdAcks || len(taken) == len(tc.taken) {
							for _, id := range held {
								if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id}); err != nil {
									t.Fatal(err)
								}
							}
							held = held[:0]
						}
					case packets.Pubrel:
						if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: pk.PacketID}); err != nil {
							t.Fatal(err)
						}
					case packets.Pingreq:
						_ = fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}})
					}
				}
			}
			if !slices.Equal(taken, tc.taken) {
				t.Errorf("server took %v, want %v", taken, tc.taken)
			}
			if tc.holdAcks > 0 && maxOut != tc.holdAcks {
				t.Errorf("at most %d in flight, want the window of %d filled", maxOut, tc.holdAcks)
			}
			// The outbox empties: the dead letters are acknowledged there.
			waitFor(t, 10*time.Second, "the outbox to empty", func() bool { return ob.Stats().Messages == 0 })
			var codes []byte
			for _, e := range dl.List() {
				codes = append(codes, e.Code)
				if e.Topic != "r/t" || e.Cause == "" {
					t.Errorf("dead letter %+v lacks its topic or cause", e)
				}
			}
			if !slices.Equal(codes, tc.dead) {
				t.Errorf("dead letters with codes %x, want %x", codes, tc.dead)
			}
			if st := b.Stats(); int(st.Connects) != tc.connects || int(st.DeadLettered) != len(tc.dead) {
				t.Errorf("connects %d (want %d), dead-lettered %d (want %d)", st.Connects, tc.connects, st.DeadLettered, len(tc.dead))
			}
		})
	}
}

// waitFor polls a state with a deadline.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServerKeepAliveAndAssignedID: the server's keepalive replaces ours
// (pings come at its period), and an assigned client identifier is the one
// the next CONNECT uses, so the server finds the session again.
func TestServerKeepAliveAndAssignedID(t *testing.T) {
	fb := newFakeBroker(t)
	testBridge(t, fb.ln.Addr().String(), 5, func(o *Options) { o.Keepalive = 60 * time.Second })
	fc := fb.next(t, 10*time.Second)
	if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack},
		Properties: packets.Properties{ServerKeepAlive: 1, ServerKeepAliveFlag: true, AssignedClientID: "srv-42"}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		pk, err := fc.read()
		if err != nil {
			t.Fatal(err)
		}
		if pk.FixedHeader.Type == packets.Pingreq {
			break
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("first PINGREQ after %s: the server's keepalive of 1 s was not used (ours is 60 s)", took)
	}
	fc.nc.Close()
	if id := fc.connect.Connect.ClientIdentifier; id != "t" {
		t.Fatalf("first CONNECT with client id %q, want ours", id)
	}
	fc2 := fb.next(t, 10*time.Second)
	if id := fc2.connect.Connect.ClientIdentifier; id != "srv-42" {
		t.Errorf("reconnect with client id %q, want the assigned srv-42", id)
	}
}
