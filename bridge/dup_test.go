package bridge

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegw/edgegw/bridge/outbox"
)

// TestResendAfterRestartIsDUP: a message stored by an earlier run may have
// gone upstream before that run ended, so its PUBLISH after a restart
// carries DUP (MQTT-3.3.1-1); a message stored in this run does not. The
// upstream side is scripted over net.Pipe with mochi's codec.
func TestResendAfterRestartIsDUP(t *testing.T) {
	dir := t.TempDir()
	ob, err := outbox.Open(outbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := ob.Append(ctx, outbox.Message{Topic: "r/old", QoS: 1, Payload: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}
	ob, err = outbox.Open(outbox.Options{Dir: dir}) // the "restart"
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()

	server, client := net.Pipe()
	defer server.Close()
	b := New(Options{
		Endpoints: []Endpoint{{Addr: "pipe"}},
		ClientID:  "t",
		Outbox:    ob,
		Dial:      func(context.Context, string) (net.Conn, error) { return client, nil },
		Keepalive: 30 * time.Second,
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(rctx) }()
	defer func() { cancel(); server.Close(); <-done }()

	_ = server.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(server)
	// CONNECT: the client reader does not decode it (a server never sends
	// one), so check its type and skip its body.
	hb, err := br.ReadByte()
	if err != nil || hb>>4 != packets.Connect {
		t.Fatalf("want CONNECT, got header 0x%02x (%v)", hb, err)
	}
	n, _, err := packets.DecodeLength(br)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := br.Discard(n); err != nil {
		t.Fatal(err)
	}
	write := func(pk packets.Packet) {
		t.Helper()
		pk.ProtocolVersion = 4
		var buf bytes.Buffer
		var err error
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
	write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, SessionPresent: true})

	old := readPublish(t, br)
	if string(old.Payload) != "old" || !old.FixedHeader.Dup {
		t.Fatalf("the message of the earlier run went up as %q with DUP %v, want DUP set", old.Payload, old.FixedHeader.Dup)
	}
	write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: old.PacketID})

	if _, err := ob.Append(ctx, outbox.Message{Topic: "r/new", QoS: 1, Payload: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	fresh := readPublish(t, br)
	if string(fresh.Payload) != "new" || fresh.FixedHeader.Dup {
		t.Fatalf("a message of this run went up as %q with DUP %v, want DUP clear", fresh.Payload, fresh.FixedHeader.Dup)
	}
}

func readPublish(t *testing.T, br *bufio.Reader) packets.Packet {
	t.Helper()
	for {
		pk, err := readPacket(br, 4)
		if err != nil {
			t.Fatalf("reading from the bridge: %v", err)
		}
		if pk.FixedHeader.Type == packets.Publish {
			return pk
		}
	}
}
