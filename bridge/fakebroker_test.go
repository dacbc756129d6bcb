package bridge

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegw/edgegw/bridge/deadletter"
	"github.com/edgegw/edgegw/bridge/outbox"
)

// fakeConn is the server side of one upstream connection, scripted by a
// test with mochi's codec (server-side decoding and encoding).
type fakeConn struct {
	t       testing.TB
	nc      net.Conn
	br      *bufio.Reader
	ver     byte
	connect packets.Packet // the CONNECT the bridge opened with
}

// read returns the next packet the bridge sent.
func (f *fakeConn) read() (packets.Packet, error) {
	var pk packets.Packet
	hb, err := f.br.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(f.br)
	if err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	pk.ProtocolVersion = f.ver
	buf := make([]byte, n)
	if _, err := io.ReadFull(f.br, buf); err != nil {
		return pk, err
	}
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectDecode(buf)
		f.ver = pk.ProtocolVersion
	case packets.Publish:
		err = pk.PublishDecode(buf)
	case packets.Subscribe:
		err = pk.SubscribeDecode(buf)
	case packets.Pubrel:
		err = pk.PubrelDecode(buf)
	case packets.Disconnect:
		err = pk.DisconnectDecode(buf)
	}
	return pk, err
}

// send encodes and writes a packet to the bridge.
func (f *fakeConn) send(pk packets.Packet) error {
	pk.ProtocolVersion = f.ver
	b, err := encodeServerPacket(pk)
	if err != nil {
		return err
	}
	_, err = f.nc.Write(b)
	return err
}

// encodeServerPacket encodes a packet a broker sends, with mochi's
// encoders, at pk.ProtocolVersion.
func encodeServerPacket(pk packets.Packet) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(&buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&buf)
	case packets.Suback:
		err = pk.SubackEncode(&buf)
	case packets.Pingresp:
		err = pk.PingrespEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	default:
		err = fmt.Errorf("fake broker cannot send type %d", pk.FixedHeader.Type)
	}
	return buf.Bytes(), err
}

// fakeBroker accepts TCP connections on loopback and runs serve for each,
// one at a time, after reading CONNECT.
type fakeBroker struct {
	ln      net.Listener
	accepts chan *fakeConn
}

func newFakeBroker(t testing.TB) *fakeBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBroker{ln: ln, accepts: make(chan *fakeConn, 64)}
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				close(fb.accepts)
				return
			}
			_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
			fc := &fakeConn{t: t, nc: nc, br: bufio.NewReader(nc), ver: 4}
			pk, err := fc.read()
			if err != nil || pk.FixedHeader.Type != packets.Connect {
				nc.Close()
				continue
			}
			fc.connect = pk
			fb.accepts <- fc
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return fb
}

// next waits for the next connection (its CONNECT read).
func (fb *fakeBroker) next(t testing.TB, within time.Duration) *fakeConn {
	t.Helper()
	select {
	case fc, ok := <-fb.accepts:
		if !ok {
			t.Fatal("fake broker closed")
		}
		t.Cleanup(func() { fc.nc.Close() })
		return fc
	case <-time.After(within):
		t.Fatalf("the bridge did not connect within %s", within)
	}
	return nil
}

// testBridge runs a bridge against addr with a fresh outbox and dead-letter
// store until the test ends.
func testBridge(t testing.TB, addr string, version byte, mutate func(*Options)) (*Bridge, *outbox.Outbox, *deadletter.Store) {
	t.Helper()
	dir := t.TempDir()
	ob, err := outbox.Open(outbox.Options{Dir: filepath.Join(dir, "outbox")})
	if err != nil {
		t.Fatal(err)
	}
	dl, err := deadletter.Open(deadletter.Options{Dir: filepath.Join(dir, "deadletter")})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Endpoints:  []Endpoint{{Addr: addr}},
		ClientID:   "t",
		Version:    version,
		Outbox:     ob,
		DeadLetter: dl,
		Keepalive:  30 * time.Second,
		BackoffMin: 10 * time.Millisecond,
		BackoffMax: 50 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&o)
	}
	b := New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("bridge did not stop within 10s")
		}
		ob.Close()
		dl.Close()
	})
	return b, ob, dl
}

func appendN(t testing.TB, ob *outbox.Outbox, topic string, qos byte, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		if _, err := ob.Append(context.Background(), outbox.Message{Topic: topic, QoS: qos, Payload: []byte(p)}); err != nil {
			t.Fatal(err)
		}
	}
}
