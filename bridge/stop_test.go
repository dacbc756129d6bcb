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

// TestStopOnStalledLink: Run returns within a few seconds of its context
// ending however the upstream stalls: net.Pipe has no buffer, so a peer
// that stops reading blocks every write. With keepalive 30 s the flush of
// the goodbye DISCONNECT used to take the 40 s write deadline (keepalive +
// connect timeout) instead of its own 1 s; a stop during the handshake used
// to wait the 10 s connect timeout.
func TestStopOnStalledLink(t *testing.T) {
	cases := []struct {
		name    string
		backlog int // messages in the outbox before the link comes up
		// upstream plays the server's side until it stalls; ready is closed
		// when the stall begins.
		upstream func(t *testing.T, server net.Conn, ready chan<- struct{})
	}{
		{"no CONNACK (stalls in the handshake)", 0, func(t *testing.T, server net.Conn, ready chan<- struct{}) {
			readConnect(t, bufio.NewReader(server))
			close(ready)
		}},
		{"idle link, then the upstream stops reading", 0, func(t *testing.T, server net.Conn, ready chan<- struct{}) {
			readConnect(t, bufio.NewReader(server))
			sendConnack(t, server)
			close(ready) // nothing more is read: the DISCONNECT finds no reader
		}},
		{"stops reading in the middle of a backlog", 200, func(t *testing.T, server net.Conn, ready chan<- struct{}) {
			br := bufio.NewReader(server)
			readConnect(t, br)
			sendConnack(t, server)
			// Take the first PUBLISH, then read nothing more: the rest of
			// the backlog and the DISCONNECT find no reader.
			if _, err := readPacket(br, 4); err != nil {
				t.Error(err)
			}
			close(ready)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ob, err := outbox.Open(outbox.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer ob.Close()
			for i := 0; i < c.backlog; i++ {
				if _, err := ob.Append(t.Context(), outbox.Message{Topic: "r/x", QoS: 1, Payload: bytes.Repeat([]byte("p"), 1000)}); err != nil {
					t.Fatal(err)
				}
			}
			server, client := net.Pipe()
			defer server.Close()
			b := New(Options{
				Endpoints: []Endpoint{{Addr: "pipe"}},
				ClientID:  "t",
				Outbox:    ob,
				Dial:      func(context.Context, string) (net.Conn, error) { return client, nil },
				Keepalive: 30 * time.Second,
			})
			ready := make(chan struct{})
			go c.upstream(t, server, ready)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { defer close(done); _ = b.Run(ctx) }()
			select {
			case <-ready:
			case <-time.After(10 * time.Second):
				t.Fatal("the bridge did not reach the stall within 10s")
			}
			start := time.Now()
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("Run did not return within 15s of its context ending")
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("Run took %v to stop on a stalled link; want at most ~1s (the DISCONNECT's own deadline)", took)
			}
		})
	}
}

// sendConnack accepts the connection.
func sendConnack(t *testing.T, server net.Conn) {
	t.Helper()
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: 4}
	if err := pk.ConnackEncode(&buf); err != nil {
		t.Error(err)
	}
	if _, err := server.Write(buf.Bytes()); err != nil {
		t.Error(err)
	}
}

// readConnect reads the CONNECT (the client reader does not decode one).
func readConnect(t *testing.T, br *bufio.Reader) {
	t.Helper()
	hb, err := br.ReadByte()
	if err != nil || hb>>4 != packets.Connect {
		t.Errorf("want CONNECT, got header 0x%02x (%v)", hb, err)
		return
	}
	n, _, err := packets.DecodeLength(br)
	if err != nil {
		t.Error(err)
		return
	}
	if _, err := br.Discard(n); err != nil {
		t.Error(err)
	}
}
