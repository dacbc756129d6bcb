package bridge

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegw/edgegw/bridge/outbox"
)

// TestNoAckIsDeadLink: a server that reads PUBLISHes and answers pings but
// never acknowledges a message is a dead link: the session ends and the
// message goes again on a new connection (MQTT resends only there).
func TestNoAckIsDeadLink(t *testing.T) {
	fb := newFakeBroker(t)
	b, ob, _ := testBridge(t, fb.ln.Addr().String(), 4, func(o *Options) {
		o.Keepalive = time.Second // pings answered well within 1.5 s even on a loaded machine
		o.AckTimeout = 2 * time.Second
	})
	appendN(t, ob, "r/t", 1, "one")
	fc := fb.next(t, 10*time.Second)
	if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}}); err != nil {
		t.Fatal(err)
	}
	go func() { // answer pings, swallow the PUBLISH
		for {
			pk, err := fc.read()
			if err != nil {
				return
			}
			if pk.FixedHeader.Type == packets.Pingreq {
				_ = fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}})
			}
		}
	}()
	fc2 := fb.next(t, 10*time.Second)
	if err := fc2.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, SessionPresent: true}); err != nil {
		t.Fatal(err)
	}
	for {
		pk, err := fc2.read()
		if err != nil {
			t.Fatalf("second connection: %v", err)
		}
		if pk.FixedHeader.Type == packets.Publish {
			if string(pk.Payload) != "one" || !pk.FixedHeader.Dup {
				t.Fatalf("resent %q dup %v", pk.Payload, pk.FixedHeader.Dup)
			}
			break
		}
	}
	if st := b.Stats(); !strings.Contains(st.LastError, "acknowledged nothing") {
		t.Errorf("the dead link is explained as %q", st.LastError)
	}
}

// TestPubrelNotWrittenByCommitter: the QoS 2 release callback runs on the
// outbox committer; while a network write is stuck (the flusher holds the
// write lock), the committer must go on committing local messages, so the
// callback hands the PUBREL over instead of writing it.
func TestPubrelNotWrittenByCommitter(t *testing.T) {
	ob, err := outbox.Open(outbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	server, client := net.Pipe() // a write blocks until the other side reads
	b := New(Options{Endpoints: []Endpoint{{Addr: "pipe"}}, ClientID: "t", Outbox: ob, Keepalive: 30 * time.Second,
		Dial: func(context.Context, string) (net.Conn, error) { return client, nil }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx) }()
	defer func() { cancel(); server.Close(); <-done }()
	fc := &fakeConn{t: t, nc: server, br: bufio.NewReader(server), ver: 4}
	_ = server.SetDeadline(time.Now().Add(20 * time.Second))
	if pk, err := fc.read(); err != nil || pk.FixedHeader.Type != packets.Connect {
		t.Fatalf("want CONNECT: %v", err)
	}
	if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}}); err != nil {
		t.Fatal(err)
	}
	appendN(t, ob, "r/q2", 2, "exactly-once")
	pub, err := fc.read()
	if err != nil || pub.FixedHeader.Type != packets.Publish {
		t.Fatalf("want the QoS 2 PUBLISH: %v", err)
	}
	// A second message: its write blocks on the pipe, because the server
	// reads one byte of it and then stops reading.
	appendN(t, ob, "r/q1", 1, "next")
	if fc.br.Buffered() != 0 {
		t.Fatalf("%d unexpected bytes after the PUBLISH", fc.br.Buffered())
	}
	if _, err := server.Read(make([]byte, 1)); err != nil { // not through bufio: it would read it all
		t.Fatal(err)
	}
	// PUBREC: the bridge records the release on the committer.
	if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: pub.PacketID}); err != nil {
		t.Fatal(err)
	}
	// The committer must still take local messages (Append waits for the
	// committer however long it takes, so time it).
	appended := make(chan error, 1)
	go func() {
		_, err := ob.Append(context.Background(), outbox.Message{Topic: "r/local", QoS: 1, Payload: []byte("local")})
		appended <- err
	}()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		server.Close() // unblock, then fail
		<-appended
		t.Fatal("a local message waited more than 5s for the upstream network: the committer is stuck in the PUBREC callback")
	}
}

// TestSubscribeIDNotInFlight: SUBSCRIBE (and an OnConnect QoS 1 publish)
// must not take the packet id of a message a persistent session may still
// hold (here a QoS 2 message of an earlier run, id 1, which the old code
// reused for every SUBSCRIBE).
func TestSubscribeIDNotInFlight(t *testing.T) {
	dir := t.TempDir()
	ob, err := outbox.Open(outbox.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, ob, "r/q2", 2, "held-1", "held-2")
	ob.Close()
	ob, err = outbox.Open(outbox.Options{Dir: dir}) // the restart
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	fb := newFakeBroker(t)
	b := New(Options{Endpoints: []Endpoint{{Addr: fb.ln.Addr().String()}}, ClientID: "t", Outbox: ob, Keepalive: 30 * time.Second,
		Rules:     []Rule{{Pattern: "cmd/#", Direction: In, QoS: 1}},
		OnConnect: func(pub func(string, []byte, byte, bool) error) { _ = pub("state/online", []byte("1"), 1, true) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx) }()
	defer func() { cancel(); <-done }()
	fc := fb.next(t, 10*time.Second)
	if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, SessionPresent: true}); err != nil {
		t.Fatal(err)
	}
	pk, err := fc.read()
	if err != nil || pk.FixedHeader.Type != packets.Subscribe {
		t.Fatalf("want SUBSCRIBE first, got type %d: %v", pk.FixedHeader.Type, err)
	}
	if pk.PacketID == pid(1) || pk.PacketID == pid(2) {
		t.Fatalf("SUBSCRIBE uses packet id %d, held by an unfinished QoS 2 message", pk.PacketID)
	}
	if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, PacketID: pk.PacketID, ReasonCodes: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	// The OnConnect publish (QoS 1) must not take a held id either.
	hook, err := fc.read()
	if err != nil || hook.FixedHeader.Type != packets.Publish || hook.TopicName != "state/online" {
		t.Fatalf("want the OnConnect PUBLISH: type %d %v", hook.FixedHeader.Type, err)
	}
	if hook.PacketID == pid(1) || hook.PacketID == pid(2) {
		t.Fatalf("the OnConnect publish uses packet id %d, held by an unfinished QoS 2 message", hook.PacketID)
	}
	if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: hook.PacketID}); err != nil {
		t.Fatal(err)
	}
	// Then the held messages go, with their own ids.
	pub, err := fc.read()
	if err != nil || pub.FixedHeader.Type != packets.Publish || pub.PacketID != pid(1) {
		t.Fatalf("want the held PUBLISH with id %d: type %d id %d %v", pid(1), pub.FixedHeader.Type, pub.PacketID, err)
	}
}
