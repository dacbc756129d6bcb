package bridge

import (
	"testing"

	"github.com/edgegw/edgegw/bridge/outbox"
)

// TestAcceptQoS2Dup: a local QoS 2 PUBLISH with DUP is dropped as a resend
// only if the outbox holds the same message (client, packet id, topic and
// payload), also after a restart; a new message that reuses a packet id
// (the publisher's earlier exchange completed) is stored. Found by
// test/e2e TestCrashQoS2, which lost such messages.
func TestAcceptQoS2Dup(t *testing.T) {
	dir := t.TempDir()
	open := func() (*outbox.Outbox, *Bridge) {
		ob, err := outbox.Open(outbox.Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return ob, New(Options{Outbox: ob, Rules: []Rule{{Pattern: "#", Direction: Out, QoS: 2}}})
	}
	accept := func(b *Bridge, m Message) {
		t.Helper()
		errc := make(chan error, 1)
		b.Accept(m, func(err error) { errc <- err })
		if err := <-errc; err != nil {
			t.Fatalf("accept %q: %v", m.Payload, err)
		}
	}
	msg := func(payload string, dup bool) Message {
		return Message{Topic: "readings/a", Payload: []byte(payload), QoS: 2, Origin: "pub", PacketID: 7, Dup: dup}
	}

	ob, b := open()
	accept(b, msg("first", false))
	accept(b, msg("first", true)) // a resend of a stored message
	accept(b, msg("second", true))
	if got := ob.Stats().Appended; got != 2 {
		t.Fatalf("appended %d, want 2: the resend of \"first\" dropped and \"second\" (packet id 7 reused) stored", got)
	}
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}

	// After a restart the outbox rebuilds what it remembers from the log.
	ob, b = open()
	defer ob.Close()
	accept(b, msg("second", true))
	accept(b, msg("third", true))
	st := ob.Stats()
	if st.Appended != 1 || st.Messages != 3 {
		t.Fatalf("after restart: appended %d (want 1: \"third\"), backlog %d (want 3)", st.Appended, st.Messages)
	}
	if got := b.Stats().DuplicatesAvoided; got != 1 {
		t.Fatalf("duplicates avoided %d after restart, want 1", got)
	}
}
