package bridge

import (
	"context"
	"testing"

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
	t.Cleanup(func() { ob.Close() }) // after the bridge stops (cleanups run last first)

	conns := make(chan *pipeUpstream, 1)
	startPipeBridge(t, ob, conns, Options{})
	u := <-conns
	u.connack()
	br, write := u.br, u.write

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
