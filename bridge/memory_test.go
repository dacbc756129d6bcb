package bridge

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegw/edgegw/bridge/outbox"
)

// TestSessionMemoryFirst: while the session is up a QoS 1 message is
// acknowledged locally when its upstream PUBACK comes and nothing is
// written; messages in flight when the link drops are written then and
// acknowledged locally once on disk, and go up again (DUP) on the next
// connection.
func TestSessionMemoryFirst(t *testing.T) {
	ob, err := outbox.Open(outbox.Options{Dir: t.TempDir(), SpillAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() }) // after the bridge stops (cleanups run last first)
	// A message accepted before the session is up goes to disk; once its
	// PUBLISH arrives, the sender runs, which it does only after the
	// session reported the link up.
	if err := ob.AppendAsync(context.Background(), outbox.Message{Topic: "r/a", QoS: 1, Payload: []byte("probe")}, nil); err != nil {
		t.Fatal(err)
	}
	conns := make(chan *pipeUpstream, 2)
	startPipeBridge(t, ob, conns, Options{})
	u := <-conns
	u.connack()
	probe := readPublish(t, u.br)
	if string(probe.Payload) != "probe" {
		t.Fatalf("first PUBLISH %q, want the probe", probe.Payload)
	}
	u.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: probe.PacketID})
	before := ob.Stats()
	if before.ToDisk["link_down"] != 1 || before.Bytes == 0 {
		t.Fatalf("outbox stats %+v: want the probe on disk (link_down)", before)
	}

	var mu sync.Mutex
	done := map[string]error{}
	doneCh := make(chan struct{}, 16)
	accept := func(payload string) {
		err := ob.AppendAsync(context.Background(), outbox.Message{Topic: "r/a", QoS: 1, Payload: []byte(payload)}, func(_ uint64, err error) {
			mu.Lock()
			done[payload] = err
			mu.Unlock()
			doneCh <- struct{}{}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitDone := func(n int) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			mu.Lock()
			got := len(done)
			mu.Unlock()
			if got >= n {
				return
			}
			select {
			case <-doneCh:
			case <-timeout:
				t.Fatalf("%d local acknowledgements after 10s, want %d", got, n)
			}
		}
	}
	for i := 0; i < 3; i++ {
		accept(fmt.Sprintf("m%d", i))
	}
	for i := 0; i < 3; i++ {
		pk := readPublish(t, u.br)
		if string(pk.Payload) != fmt.Sprintf("m%d", i) || pk.FixedHeader.Dup {
			t.Fatalf("PUBLISH %d: %q dup %v", i, pk.Payload, pk.FixedHeader.Dup)
		}
		mu.Lock()
		n := len(done)
		mu.Unlock()
		if n != i {
			t.Fatalf("%d local acknowledgements before the upstream PUBACK of m%d, want %d", n, i, i)
		}
		u.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
		waitDone(i + 1)
	}
	if st := ob.Stats(); st.Bytes != before.Bytes || st.MemoryAcked != 3 || st.ToDisk["link_down"] != 1 {
		t.Fatalf("outbox stats %+v: want 3 acked from memory, no record written", st)
	}

	// Two in flight when the link drops: written, then acknowledged locally.
	accept("m3")
	accept("m4")
	readPublish(t, u.br)
	readPublish(t, u.br)
	u.server.Close()
	waitDone(5)
	if st := ob.Stats(); st.ToDisk["link_down"] != 3 || st.Bytes <= before.Bytes {
		t.Fatalf("outbox stats %+v: want 2 more written for link_down", st)
	}
	for p, err := range done {
		if err != nil {
			t.Fatalf("%s acknowledged with %v", p, err)
		}
	}
	// The next connection sends them again, in order, with DUP.
	u = <-conns
	u.connack()
	for _, want := range []string{"m3", "m4"} {
		pk := readPublish(t, u.br)
		if string(pk.Payload) != want || !pk.FixedHeader.Dup {
			t.Fatalf("after reconnect: %q dup %v, want %s with DUP", pk.Payload, pk.FixedHeader.Dup, want)
		}
		u.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
	}
}
