package bridge

import (
	"slices"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestLiveFirst: with live_first a message that arrives while a backlog
// drains goes ahead of the rest of the backlog, once; without it, after.
func TestLiveFirst(t *testing.T) {
	for _, tc := range []struct {
		live bool
		want []string
	}{
		{false, []string{"b1", "b2", "b3", "b4", "L"}},
		{true, []string{"b1", "L", "b2", "b3", "b4"}},
	} {
		fb := newFakeBroker(t)
		b, ob, _ := testBridge(t, fb.ln.Addr().String(), 4, func(o *Options) {
			o.LiveFirst = tc.live
			o.Inflight = 1 // one at a time, so the order shows
			o.Rules = []Rule{{Pattern: "r/#", Direction: Out, QoS: 1}}
		})
		appendN(t, ob, "r/t", 1, "b1", "b2", "b3", "b4") // the backlog of an outage
		fc := fb.next(t, 10*time.Second)
		if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}}); err != nil {
			t.Fatal(err)
		}
		var got []string
		for len(got) < len(tc.want) {
			pk, err := fc.read()
			if err != nil {
				t.Fatalf("live %v: %v after %v", tc.live, err, got)
			}
			if pk.FixedHeader.Type != packets.Publish {
				continue
			}
			got = append(got, string(pk.Payload))
			if len(got) == 1 {
				// A fresh reading while b1 is in flight.
				done := make(chan error, 1)
				b.Accept(Message{Topic: "r/t", QoS: 1, Payload: []byte("L")}, func(err error) { done <- err })
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("live_first %v: sent %v, want %v", tc.live, got, tc.want)
		}
		waitFor(t, 10*time.Second, "the outbox to empty", func() bool { return ob.Stats().Messages == 0 })
		// Nothing more (no second copy of L): the next packet is a ping.
		_ = fc.nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if pk, err := fc.read(); err == nil && pk.FixedHeader.Type == packets.Publish {
			t.Errorf("live_first %v: a second copy of %q", tc.live, pk.Payload)
		}
	}
}
