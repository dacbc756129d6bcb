package gateway

import (
	"context"
	"errors"
	"github.com/edgegw/edgegw/internal/sockio"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Liveness for the systemd watchdog: each main loop owns a heart, and the
// watchdog pings systemd only while every heart is fresh. There are two
// kinds, because the loops are of two kinds:
//
//   - a beating heart (Beat) belongs to a loop that wakes up on its own
//     every so often — the bridge session (keepalive PINGREQ/PINGRESP, or a
//     reconnect attempt after a bounded backoff) and the broker probe (a
//     timer). It is stale when it has not beaten for max.
//   - a busy heart (Enter/Leave) belongs to a loop that may rightly sleep
//     for hours — a device supervisor blocked reading a quiet serial port.
//     Sleeping is healthy; it is stale only when the loop has been inside a
//     step that must be short (publishing a reading) for longer than max.
//
// A wedged loop therefore stops the pings, and an idle one does not.
type liveness struct {
	now func() time.Time

	mu     sync.Mutex
	hearts []*heart
}

// heart is one loop's liveness.
type heart struct {
	name string
	max  time.Duration
	busy bool // Enter/Leave kind

	last      atomic.Int64 // unix nanoseconds of the last Beat
	busySince atomic.Int64 // unix nanoseconds of Enter; 0 = not inside
	depth     atomic.Int32
	now       func() time.Time
	// excused, when set and true, keeps a busy heart fresh (a reading
	// waiting for buffer space under full_policy "block").
	excused func() bool
}

func newLiveness(now func() time.Time) *liveness {
	if now == nil {
		now = time.Now
	}
	return &liveness{now: now}
}

// beating adds a heart that must Beat at least every max.
func (l *liveness) beating(name string, max time.Duration) *heart {
	h := &heart{name: name, max: max, now: l.now}
	h.last.Store(l.now().UnixNano())
	l.add(h)
	return h
}

// busyHeart adds a heart that is stale only when inside Enter for over max.
func (l *liveness) busyHeart(name string, max time.Duration) *heart {
	h := &heart{name: name, max: max, busy: true, now: l.now}
	l.add(h)
	return h
}

func (l *liveness) add(h *heart) {
	l.mu.Lock()
	l.hearts = append(l.hearts, h)
	l.mu.Unlock()
}

// stale returns the names of the hearts that are not fresh, sorted.
func (l *liveness) stale() []string {
	now := l.now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, h := range l.hearts {
		if !h.fresh(now) {
			out = append(out, h.name)
		}
	}
	sort.Strings(out)
	return out
}

// Beat records that the loop is alive. A nil heart ignores it.
func (h *heart) Beat() {
	if h != nil {
		h.last.Store(h.now().UnixNano())
	}
}

// Enter marks the start of a step that must be short; Leave its end.
// Steps may nest (a reading published from two goroutines of one driver).
func (h *heart) Enter() {
	if h == nil {
		return
	}
	if h.depth.Add(1) == 1 {
		h.busySince.Store(h.now().UnixNano())
	}
}

// Leave ends a step begun with Enter.
func (h *heart) Leave() {
	if h == nil {
		return
	}
	if h.depth.Add(-1) == 0 {
		h.busySince.Store(0)
	}
}

func (h *heart) fresh(now int64) bool {
	if h.busy {
		since := h.busySince.Load()
		if since == 0 || time.Duration(now-since) <= h.max {
			return true
		}
		return h.excused != nil && h.excused()
	}
	return time.Duration(now-h.last.Load()) <= h.max
}

// beatConn is a net.Conn whose reads and writes beat a heart: the upstream
// session reads a PINGRESP at least every keepalive, so a session whose
// reader or writer is stuck stops beating.
type beatConn struct {
	net.Conn
	h *heart
}

func (c beatConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.h.Beat()
	return n, err
}

func (c beatConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.h.Beat()
	return n, err
}

// SyscallConn returns the TCP socket's raw connection: the bridge writes a
// small message at once, from the goroutine that accepted it, only over a
// kernel socket, whose buffer takes it without waiting for the peer
// (bridge/direct.go).
func (c beatConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("gateway: the upstream connection is not a socket")
}

// beatDialer returns a bridge dialer that beats h on every attempt and on
// every read and write of the connection it makes.
func beatDialer(h *heart) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		h.Beat()
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		h.Beat()
		if err != nil {
			return nil, err
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
			nc = sockio.Wrap(tc) // raw socket reads and writes (internal/sockio)
		}
		return beatConn{Conn: nc, h: h}, nil
	}
}
