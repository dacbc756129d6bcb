package bridge

import (
	"context"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegw/edgegw/bridge/outbox"
)

// TestWillAndOnConnect: the Will hook's message is in CONNECT; OnConnect's
// QoS 1 publish is the first PUBLISH after CONNACK, and the backlog follows
// only once it is acknowledged; its PUBACK does not acknowledge an outbox
// message (the identifiers overlap); on a clean stop the Will is published
// before DISCONNECT. The upstream side is scripted over net.Pipe.
func TestWillAndOnConnect(t *testing.T) {
	ob, err := outbox.Open(outbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() }) // after the bridge stops (cleanups run last first)
	ctx := context.Background()
	if _, err := ob.Append(ctx, outbox.Message{Topic: "r/backlog", QoS: 1, Payload: []byte("stored")}); err != nil {
		t.Fatal(err)
	}
	hookErr := make(chan error, 1)
	conns := make(chan *pipeUpstream, 1)
	cancel, done := startPipeBridge(t, ob, conns, Options{
		Will: func() *Will {
			return &Will{Topic: "gw/status", Payload: []byte("offline"), QoS: 1, Retain: true}
		},
		OnConnect: func(pub func(string, []byte, byte, bool) error) {
			hookErr <- pub("gw/status", []byte("online"), 1, true)
		},
	})
	u := <-conns
	connect := u.connect()
	cp := connect.Connect
	if !cp.WillFlag || cp.WillTopic != "gw/status" || string(cp.WillPayload) != "offline" || cp.WillQos != 1 || !cp.WillRetain {
		t.Fatalf("CONNECT will: flag %v topic %q payload %q qos %d retain %v", cp.WillFlag, cp.WillTopic, cp.WillPayload, cp.WillQos, cp.WillRetain)
	}
	br, write := u.br, u.write
	write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}})

	first := readPublish(t, br)
	if first.TopicName != "gw/status" || string(first.Payload) != "online" || first.FixedHeader.Qos != 1 || !first.FixedHeader.Retain {
		t.Fatalf("first PUBLISH %s %q qos %d retain %v, want OnConnect's retained online at QoS 1", first.TopicName, first.Payload, first.FixedHeader.Qos, first.FixedHeader.Retain)
	}
	write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: first.PacketID})
	if err := <-hookErr; err != nil {
		t.Fatalf("OnConnect's QoS 1 publish: %v", err)
	}
	backlog := readPublish(t, br)
	if backlog.TopicName != "r/backlog" {
		t.Fatalf("second PUBLISH %s, want the backlog", backlog.TopicName)
	}
	if st := ob.Stats(); st.Messages != 1 {
		t.Fatalf("the hook's PUBACK acknowledged an outbox message: backlog %d, want 1", st.Messages)
	}
	write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: backlog.PacketID})

	cancel() // a clean stop
	will := readPublish(t, br)
	if will.TopicName != "gw/status" || string(will.Payload) != "offline" || !will.FixedHeader.Retain {
		t.Fatalf("on a clean stop the bridge published %s %q retain %v, want the Will", will.TopicName, will.Payload, will.FixedHeader.Retain)
	}
	pk, err := readPacket(br, 4)
	if err != nil || pk.FixedHeader.Type != packets.Disconnect {
		t.Fatalf("after the Will: %v %v, want DISCONNECT", packetName(pk.FixedHeader.Type), err)
	}
	<-done
	if st := ob.Stats(); st.Messages != 0 {
		t.Errorf("backlog %d after its PUBACK, want 0", st.Messages)
	}
}
