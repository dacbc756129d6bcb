package bridge

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

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
	defer ob.Close()
	ctx := context.Background()
	if _, err := ob.Append(ctx, outbox.Message{Topic: "r/backlog", QoS: 1, Payload: []byte("stored")}); err != nil {
		t.Fatal(err)
	}
	server, client := net.Pipe()
	defer server.Close()
	hookErr := make(chan error, 1)
	b := New(Options{
		Endpoints: []Endpoint{{Addr: "pipe"}},
		ClientID:  "t",
		Outbox:    ob,
		Dial:      func(context.Context, string) (net.Conn, error) { return client, nil },
		Keepalive: 30 * time.Second,
		Will: func() *Will {
			return &Will{Topic: "gw/status", Payload: []byte("offline"), QoS: 1, Retain: true}
		},
		OnConnect: func(pub func(string, []byte, byte, bool) error) {
			hookErr <- pub("gw/status", []byte("online"), 1, true)
		},
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(rctx) }()
	defer func() { cancel(); server.Close(); <-done }()

	_ = server.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(server)
	hb, err := br.ReadByte()
	if err != nil || hb>>4 != packets.Connect {
		t.Fatalf("want CONNECT, got header 0x%02x (%v)", hb, err)
	}
	n, _, err := packets.DecodeLength(br)
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Fatal(err)
	}
	var connect packets.Packet
	connect.FixedHeader.Decode(hb)
	if err := connect.ConnectDecode(body); err != nil {
		t.Fatal(err)
	}
	cp := connect.Connect
	if !cp.WillFlag || cp.WillTopic != "gw/status" || string(cp.WillPayload) != "offline" || cp.WillQos != 1 || !cp.WillRetain {
		t.Fatalf("CONNECT will: flag %v topic %q payload %q qos %d retain %v", cp.WillFlag, cp.WillTopic, cp.WillPayload, cp.WillQos, cp.WillRetain)
	}
	write := func(pk packets.Packet) {
		t.Helper()
		pk.ProtocolVersion = 4
		var buf bytes.Buffer
		switch pk.FixedHeader.Type {
		case packets.Connack:
			err = pk.ConnackEncode(&buf)
		case packets.Puback:
			err = pk.PubackEncode(&buf)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := server.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
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
