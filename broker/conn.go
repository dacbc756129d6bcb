package broker

import (
	"crypto/tls"
	"errors"
	"github.com/edgegw/edgegw/internal/sockio"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// guardConn is every network client's connection as mochi sees it. It
// keeps one slow or hostile client from costing anyone else:
//
//   - Write never blocks. mochi writes to a client while holding that
//     client's lock, and the publish path (every publisher's goroutine, the
//     acknowledger, deliveries from upstream) takes the same lock to pick
//     a packet id. Bytes are queued here, at most limits.queue of them, and
//     one goroutine per connection writes them out, each write bounded by
//     limits.writeTimeout. A client that lets its queue overflow or a write
//     time out is disconnected and counted (a slow consumer).
//   - Until mochi has accepted the CONNECT (it then sets the keepalive
//     deadline), reads carry the connect deadline, so a socket that never
//     sends CONNECT, or stops in the middle of a TLS handshake, is closed
//     and counted.
//
// Deadlines mochi sets apply to reads only; write deadlines are this
// type's own.
type guardConn struct {
	net.Conn
	lim *limits

	mu      sync.Mutex
	buf     []byte // queued, not yet handed to the writer
	closing bool
	werr    error // sticky: the first write error; later writes fail with it
	wake    chan struct{}
	queued  uint64             // bytes Write has accepted, in all
	busy    bool               // the writer has bytes out of buf and is writing them
	try     func(p []byte) int // a write that cannot block (sockio.Conn.TryWrite); nil over TLS

	rdl       time.Time   // the read deadline last set through this type (mu)
	connected atomic.Bool // mochi set a deadline: the CONNECT was accepted
	dropped   atomic.Bool // counted once as a slow consumer
	clientID  atomic.Pointer[string]
}

// setClientID names the connection's client once it has connected, for the
// log line that may disconnect it.
func (c *guardConn) setClientID(id string) { c.clientID.Store(&id) }

func (c *guardConn) client() string {
	if p := c.clientID.Load(); p != nil {
		return *p
	}
	return ""
}

// guardTLSConn is a guardConn over TLS; it exposes the handshake's state
// (the auth hook reads the client certificate from it).
type guardTLSConn struct {
	*guardConn
	tc *tls.Conn
}

// ConnectionState returns the TLS connection's state.
func (c guardTLSConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// errSlowConsumer is the write error after a client was dropped for not
// reading.
var errSlowConsumer = errors.New("broker: client disconnected: it does not read what it is sent")

func newGuardConn(c net.Conn, lim *limits) net.Conn {
	if tc, ok := c.(*net.TCPConn); ok {
		c = sockio.Wrap(tc) // the listener's wrapping, for a connection made elsewhere
	}
	g := &guardConn{Conn: c, lim: lim, wake: make(chan struct{}, 1)}
	if sc, ok := c.(*sockio.Conn); ok {
		g.try = sc.TryWrite
	}
	if lim.connectTimeout > 0 {
		_ = c.SetReadDeadline(time.Now().Add(lim.connectTimeout))
	}
	lim.writers.Add(1)
	go g.writer()
	if tc, ok := c.(*tls.Conn); ok {
		return guardTLSConn{guardConn: g, tc: tc}
	}
	return g
}

// Read reads from the connection; a read that times out before the
// CONNECT was accepted is a connect timeout.
func (c *guardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && !c.connected.Load() && isTimeout(err) {
		c.mu.Lock()
		closing := c.closing
		c.mu.Unlock()
		if !closing {
			c.lim.connectTimedOut(c.RemoteAddr())
		}
	}
	return n, err
}

// Write queues p for the writer and returns at once. When nothing is
// queued and the writer is idle, it first tries the socket itself, in a
// write that cannot block: a PUBACK then costs one syscall and no hand-off
// to the writer goroutine (and its wake-up). What the socket does not take
// is queued.
func (c *guardConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.werr != nil {
		err := c.werr
		c.mu.Unlock()
		return 0, err
	}
	if c.closing {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	if len(c.buf) > 0 && len(c.buf)+len(p) > c.lim.queue {
		queued := len(c.buf) + len(p)
		c.mu.Unlock()
		c.slow("outbound queue full", queued)
		return 0, errSlowConsumer
	}
	c.queued += uint64(len(p))
	q := p
	if len(c.buf) == 0 && !c.busy && c.try != nil {
		q = p[c.try(p):]
		if len(q) == 0 {
			c.mu.Unlock()
			return len(p), nil
		}
	}
	c.buf = append(c.buf, q...)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// slow disconnects a client that does not keep up with what it is sent.
// The socket is closed at once: that also ends a write blocked on it.
func (c *guardConn) slow(why string, queued int) {
	if c.dropped.CompareAndSwap(false, true) {
		c.lim.slowConsumer(c.client(), c.RemoteAddr(), why, queued)
	}
	c.mu.Lock()
	c.closing = true
	if c.werr == nil {
		c.werr = errSlowConsumer
	}
	c.mu.Unlock()
	_ = c.Conn.Close()
	c.poke()
}

// writer writes queued bytes until the connection closes; on Close it
// writes what is still queued (a CONNACK or DISCONNECT with its reason),
// bounded by the write timeout, then closes the socket.
func (c *guardConn) writer() {
	defer c.lim.writers.Done()
	defer c.Conn.Close()
	var out []byte
	for {
		<-c.wake
		c.mu.Lock()
		out, c.buf = c.buf, out[:0]
		closing, failed := c.closing, c.werr != nil
		c.busy = len(out) > 0
		c.mu.Unlock()
		if failed {
			return
		}
		if len(out) > 0 {
			timeout := c.lim.writeTimeout
			if closing {
				timeout = min(timeout, closeFlushTimeout)
			}
			_ = c.Conn.SetWriteDeadline(time.Now().Add(timeout))
			if _, err := c.Conn.Write(out); err != nil {
				c.mu.Lock()
				if c.werr == nil {
					c.werr = err
				}
				c.mu.Unlock()
				if isTimeout(err) && !closing {
					c.slow("write timed out", len(out))
				}
				_ = c.Conn.SetReadDeadline(time.Now()) // wake mochi's reader
				return
			}
		}
		c.mu.Lock()
		c.busy = false
		c.mu.Unlock()
		if cap(out) > 64<<10 {
			out = nil // give a burst's memory back
		}
		if closing {
			c.mu.Lock()
			empty := len(c.buf) == 0
			c.mu.Unlock()
			if empty {
				return
			}
			c.poke()
		}
	}
}

// accepted returns how many bytes Write has queued since the connection
// opened.
func (c *guardConn) accepted() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued
}

func (c *guardConn) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// closeFlushTimeout bounds the last write after Close.
const closeFlushTimeout = time.Second

// Close stops reading at once (mochi's reader returns) and lets the writer
// flush what is queued before it closes the socket.
func (c *guardConn) Close() error {
	c.mu.Lock()
	already := c.closing
	c.closing = true
	c.mu.Unlock()
	if already {
		return nil
	}
	_ = c.Conn.SetReadDeadline(time.Now())
	c.poke()
	return nil
}

// SetDeadline is mochi's keepalive deadline: it applies to reads only, and
// marks the CONNECT as accepted. mochi sets it before every packet, to
// now + 1.5 × keepalive; moving the runtime's deadline timer each time
// was about 1 % of a message's instructions (cachegrind, test/hotpath), so
// the standing deadline stays while it is less than a sixteenth of the
// span older than the one asked for: a silent client is closed at most
// that much early (after 1.41 × keepalive, not 1.5 ×; the client must
// send within 1 ×). A deadline earlier than the standing one, or none,
// always goes through.
func (c *guardConn) SetDeadline(t time.Time) error {
	if !c.connected.Load() {
		c.connected.Store(true)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil
	}
	if !t.IsZero() && !c.rdl.IsZero() && !c.rdl.After(t) {
		if span := time.Until(t); span > 0 && t.Sub(c.rdl) < span/16 {
			return nil
		}
	}
	c.rdl = t
	return c.Conn.SetReadDeadline(t)
}

// SetReadDeadline sets the read deadline unless the connection is closing.
func (c *guardConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil
	}
	c.rdl = t
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline does nothing: writes are queued, and the writer bounds
// each one itself.
func (c *guardConn) SetWriteDeadline(time.Time) error { return nil }

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
