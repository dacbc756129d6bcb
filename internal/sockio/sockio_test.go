package sockio

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pair is a loopback TCP connection: a, wrapped, and b, its plain peer.
func pair(t *testing.T) (*Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := Listener{Listener: ln}.Accept()
		if err != nil {
			c = nil
		}
		ch <- c
	}()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var a net.Conn
	select {
	case a = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("accept did not return")
	}
	sc, ok := a.(*Conn)
	if !ok {
		t.Fatalf("Listener returned %T, want *sockio.Conn", a)
	}
	t.Cleanup(func() { sc.Close(); b.Close() })
	return sc, b.(*net.TCPConn)
}

// TestBytesBothWays: 4 MiB each way, written while the other side reads in
// small pieces, so both Read and Write meet a socket that is not ready
// (EAGAIN) and wait in the poller; every byte arrives, in order.
func TestBytesBothWays(t *testing.T) {
	a, b := pair(t)
	data := make([]byte, 4<<20)
	rand.Read(data)
	errc := make(chan error, 2)
	go func() { _, err := a.Write(data); errc <- err }()
	go func() { _, err := b.Write(data); errc <- err }()
	readAll := func(r io.Reader) []byte {
		got := make([]byte, 0, len(data))
		buf := make([]byte, 1500)
		for len(got) < len(data) {
			n, err := r.Read(buf)
			if err != nil {
				t.Fatalf("read after %d bytes: %v", len(got), err)
			}
			got = append(got, buf[:n]...)
		}
		return got
	}
	_ = a.SetReadDeadline(time.Now().Add(30 * time.Second))
	_ = b.SetReadDeadline(time.Now().Add(30 * time.Second))
	if got := readAll(b); !bytes.Equal(got, data) {
		t.Fatal("a → b: bytes differ")
	}
	if got := readAll(a); !bytes.Equal(got, data) {
		t.Fatal("b → a: bytes differ")
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

// TestErrorsAsNet: a deadline, the peer closing, our own Close and a reset
// give the errors net's own connection gives, so callers that test them
// (mochi's keepalive, the TLS layer, our connect timeout) behave the same.
func TestErrorsAsNet(t *testing.T) {
	t.Run("read deadline", func(t *testing.T) {
		a, _ := pair(t)
		_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := a.Read(make([]byte, 10))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("err = %v, want a net.Error that is a timeout", err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("err = %#v, want a *net.OpError for read", err)
		}
	})
	t.Run("write deadline", func(t *testing.T) {
		a, _ := pair(t)
		_ = a.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := a.Write(make([]byte, 64<<20)) // the peer never reads
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("err = %v, want a deadline", err)
		}
	})
	t.Run("peer closes", func(t *testing.T) {
		a, b := pair(t)
		b.Write([]byte("last"))
		b.Close()
		buf := make([]byte, 10)
		n, err := a.Read(buf)
		if err != nil || string(buf[:n]) != "last" {
			t.Fatalf("read = %q, %v", buf[:n], err)
		}
		if _, err := a.Read(buf); err != io.EOF {
			t.Fatalf("err = %v, want io.EOF", err)
		}
	})
	t.Run("close while reading", func(t *testing.T) {
		a, _ := pair(t)
		errc := make(chan error, 1)
		go func() { _, err := a.Read(make([]byte, 10)); errc <- err }()
		waitIOWait(t) // Read is parked in the poller
		a.Close()
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("err = %v, want net.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Read did not end at Close")
		}
		if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("write after close: %v, want net.ErrClosed", err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		a, b := pair(t)
		_ = b.SetLinger(0)
		b.Close() // RST
		_ = a.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := a.Read(make([]byte, 10))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("err = %v, want ECONNRESET", err)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("err = %#v, want a *net.OpError for read", err)
		}
	})
}

// TestTryWriteNeverWaits: with the peer not reading, TryWrite takes what
// the socket's buffer holds and then returns 0 at once, never blocking;
// while a Write is waiting for the socket, TryWrite returns 0 too.
func TestTryWriteNeverWaits(t *testing.T) {
	a, b := pair(t)
	_ = a.SetWriteBuffer(16 << 10)
	chunk := make([]byte, 64<<10)
	total, zero := 0, false
	for range 1000 {
		n := a.TryWrite(chunk)
		total += n
		if n == 0 {
			zero = true
			break
		}
	}
	if !zero || total == 0 {
		t.Fatalf("TryWrite took %d bytes and never returned 0", total)
	}
	done := make(chan error, 1)
	go func() { _, err := a.Write(make([]byte, 1<<20)); done <- err }()
	// The Write above is blocked (the buffer is full): TryWrite must not wait for it.
	for range 100 {
		if n := a.TryWrite([]byte("x")); n != 0 {
			t.Fatalf("TryWrite wrote %d bytes into a full socket", n)
		}
	}
	go io.Copy(io.Discard, b)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("write: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the blocked Write did not finish once the peer read")
	}
}

// TestWrapOther: anything but a *net.TCPConn is returned as it is.
func TestWrapOther(t *testing.T) {
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if Wrap(p) != p {
		t.Fatal("Wrap changed a net.Pipe connection")
	}
}

// waitIOWait waits (bounded) until a goroutine is parked in the network
// poller inside this package's Read.
func waitIOWait(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for range 1000 {
		st := string(buf[:runtime.Stack(buf, true)])
		for _, g := range strings.Split(st, "\n\n") {
			if strings.Contains(g, "[IO wait") && strings.Contains(g, "sockio.(*Conn).Read") {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("Read never waited in the poller")
}
