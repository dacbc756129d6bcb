package bridge

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegw/edgegw/bridge/outbox"
)

// pipeUpstream is a scripted upstream broker on the far end of net.Pipe.
type pipeUpstream struct {
	t      *testing.T
	server net.Conn
	br     *bufio.Reader
}

// startPipeBridge runs a bridge on ob against a scripted upstream. opts
// may carry hooks (Will, OnConnect); Endpoints, ClientID, Outbox,
// Keepalive and Dial are set here. Each Dial gets a fresh pipe, sent on
// conns. cancel stops the bridge cleanly and done closes once Run has
// returned; the test's cleanup does both and closes every pipe.
func startPipeBridge(t *testing.T, ob *outbox.Outbox, conns chan<- *pipeUpstream, opts Options) (cancel context.CancelFunc, done <-chan struct{}) {
	t.Helper()
	var mu sync.Mutex
	var servers []net.Conn
	opts.Endpoints = []Endpoint{{Addr: "pipe"}}
	opts.ClientID = "t"
	opts.Outbox = ob
	opts.Keepalive = 30 * time.Second
	opts.Dial = func(ctx context.Context, _ string) (net.Conn, error) {
		server, client := net.Pipe()
		u := &pipeUpstream{t: t, server: server, br: bufio.NewReader(server)}
		mu.Lock()
		servers = append(servers, server)
		mu.Unlock()
		select {
		case conns <- u:
			return client, nil
		case <-ctx.Done():
			client.Close()
			return nil, ctx.Err()
		}
	}
	b := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		mu.Lock()
		for _, s := range servers {
			s.Close() // a DISCONNECT nobody reads must not wait for its write deadline
		}
		mu.Unlock()
		<-ran
	})
	return cancel, ran
}

// connect reads the bridge's CONNECT, with a deadline for the whole
// script, and decodes it.
func (u *pipeUpstream) connect() packets.Packet {
	u.t.Helper()
	_ = u.server.SetDeadline(time.Now().Add(10 * time.Second))
	// The client reader does not decode CONNECT (a server never sends
	// one), so read its header and body here.
	hb, err := u.br.ReadByte()
	if err != nil || hb>>4 != packets.Connect {
		u.t.Fatalf("want CONNECT, got header 0x%02x (%v)", hb, err)
	}
	n, _, err := packets.DecodeLength(u.br)
	if err != nil {
		u.t.Fatal(err)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(u.br, body); err != nil {
		u.t.Fatal(err)
	}
	var connect packets.Packet
	connect.FixedHeader.Decode(hb)
	if err := connect.ConnectDecode(body); err != nil {
		u.t.Fatal(err)
	}
	return connect
}

// connack reads the bridge's CONNECT and answers it with a CONNACK that
// has a session present.
func (u *pipeUpstream) connack() {
	u.t.Helper()
	u.connect()
	u.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, SessionPresent: true})
}

// write encodes a CONNACK or PUBACK (MQTT 3.1.1) and sends it to the
// bridge.
func (u *pipeUpstream) write(pk packets.Packet) {
	u.t.Helper()
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
		u.t.Fatal(err)
	}
	if _, err := u.server.Write(buf.Bytes()); err != nil {
		u.t.Fatal(err)
	}
}

// readPublish reads packets from the bridge until a PUBLISH and returns it.
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
