package broker

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- nil
			return
		}
		acc <- c
	}()
	client, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return server, client
}

// TestGuardConnWriteOrder: bytes reach the peer whole and in order whether
// Write puts them on the socket itself (nothing queued, writer idle) or the
// socket is full and they wait in the queue for the writer, and the switch
// between the two loses or reorders nothing.
func TestGuardConnWriteOrder(t *testing.T) {
	cases := []struct {
		name    string
		chunks  int
		size    int
		readLag bool // the peer reads only after every write (the socket fills up)
	}{
		{"one PUBACK at a time", 200, 4, false},
		{"socket full, the rest queued", 100, 16 << 10, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			server, client := tcpPair(t)
			if tcp, ok := server.(*net.TCPConn); ok {
				_ = tcp.SetWriteBuffer(16 << 10) // fill early in the lagging case
			}
			lim := newLimits(Limits{ClientQueue: 64 << 20}, slog.New(slog.DiscardHandler))
			g := newGuardConn(server, lim).(*guardConn)
			if g.try == nil {
				t.Fatal("a TCP connection has no write that cannot block: writes would all go through the writer")
			}
			var want bytes.Buffer
			got := make(chan []byte, 1)
			read := func() {
				_ = client.SetReadDeadline(time.Now().Add(20 * time.Second))
				b, err := io.ReadAll(io.LimitReader(client, int64(tc.chunks*tc.size)))
				if err != nil {
					t.Error(err)
				}
				got <- b
			}
			if !tc.readLag {
				go read()
			}
			for i := 0; i < tc.chunks; i++ {
				p := bytes.Repeat([]byte(fmt.Sprintf("%07d|", i)), tc.size/8+1)[:tc.size]
				want.Write(p)
				if n, err := g.Write(p); err != nil || n != len(p) {
					t.Fatalf("write %d: %d, %v", i, n, err)
				}
			}
			if tc.readLag {
				go read()
			}
			var b []byte
			select {
			case b = <-got:
			case <-time.After(30 * time.Second):
				t.Fatal("peer did not get the bytes within 30 s")
			}
			if !bytes.Equal(b, want.Bytes()) {
				t.Fatalf("peer got %d bytes, not the %d written in order", len(b), want.Len())
			}
			_ = g.Close()
			lim.writers.Wait()
		})
	}
}

// deadlineCounter counts the read deadlines that reach the connection.
type deadlineCounter struct {
	net.Conn
	n    int
	last time.Time
}

func (d *deadlineCounter) SetReadDeadline(t time.Time) error {
	d.n++
	d.last = t
	return d.Conn.SetReadDeadline(t)
}

// TestKeepaliveDeadlineCoalesced: mochi's per-packet keepalive deadline
// reaches the socket only when the standing one is a sixteenth of the span
// stale; an earlier deadline, and the first, always go through.
func TestKeepaliveDeadlineCoalesced(t *testing.T) {
	server, _ := tcpPair(t)
	d := &deadlineCounter{Conn: server}
	lim := newLimits(Limits{}, slog.New(slog.DiscardHandler))
	g := newGuardConn(d, lim).(*guardConn)
	defer g.Close()
	d.n = 0                       // the connect deadline, set at once
	const span = 90 * time.Second // keepalive 60 s
	base := time.Now()
	for i := range 1000 { // 1,000 packets within a second of each other
		if err := g.SetDeadline(base.Add(span + time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if d.n != 1 {
		t.Fatalf("%d deadlines reached the socket for 1,000 packets in a second, want 1", d.n)
	}
	if !d.last.Equal(base.Add(span)) {
		t.Fatalf("standing deadline %v, want the first, %v", d.last, base.Add(span))
	}
	// Stale by more than span/16: moves.
	later := base.Add(span + span/16 + time.Second)
	if err := g.SetDeadline(later); err != nil || d.n != 2 || !d.last.Equal(later) {
		t.Fatalf("a deadline span/16 past the standing one: %d calls, last %v (want 2, %v), %v", d.n, d.last, later, err)
	}
	// Earlier than the standing one (a shorter keepalive): goes through.
	earlier := base.Add(time.Second)
	if err := g.SetDeadline(earlier); err != nil || d.n != 3 || !d.last.Equal(earlier) {
		t.Fatalf("an earlier deadline: %d calls, last %v (want 3, %v), %v", d.n, d.last, earlier, err)
	}
	// None (keepalive 0): goes through.
	if err := g.SetDeadline(time.Time{}); err != nil || d.n != 4 || !d.last.IsZero() {
		t.Fatalf("no deadline: %d calls, last %v (want 4, zero), %v", d.n, d.last, err)
	}
}
