package bridge

import (
	"net"
	"sync"
	"time"
)

// deadlines sets a connection's deadlines under a limit: once the session
// is stopping, no later deadline may reach past the limit. Without it the
// flush after a clean DISCONNECT (1 s) or a stop during the handshake would
// take the ordinary keepalive+10 s write deadline, and a stalled link would
// hold a shutdown for ~40 s.
type deadlines struct {
	nc    net.Conn
	mu    sync.Mutex
	limit time.Time // zero: no limit
	// The deadlines last applied (zero: none, or unknown).
	read, write time.Time
}

// capped returns t, or the limit when t is later (or none).
func (d *deadlines) capped(t time.Time) time.Time {
	if !d.limit.IsZero() && (t.IsZero() || t.After(d.limit)) {
		return d.limit
	}
	return t
}

// set sets the read and write deadline to t, within the limit.
func (d *deadlines) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t = d.capped(t)
	d.read, d.write = t, t
	_ = d.nc.SetDeadline(t)
}

// setWriteLazy sets the write deadline to t, within the limit, unless the
// one in force is at most slack earlier than t: moving a deadline costs a
// runtime timer update, and the flush of every message moved it by
// microseconds.
func (d *deadlines) setWriteLazy(t time.Time, slack time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t = d.capped(t)
	if fresh(d.write, t, slack) {
		return
	}
	d.write = t
	_ = d.nc.SetWriteDeadline(t)
}

// setReadLazy sets the read deadline to t, within the limit, unless the one
// in force is at most slack earlier than t (see setWriteLazy).
func (d *deadlines) setReadLazy(t time.Time, slack time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t = d.capped(t)
	if fresh(d.read, t, slack) {
		return
	}
	d.read = t
	_ = d.nc.SetReadDeadline(t)
}

// fresh reports whether the deadline cur in force may stand for t: it is
// set, not later than t and at most slack earlier.
func fresh(cur, t time.Time, slack time.Duration) bool {
	return !cur.IsZero() && !t.IsZero() && !cur.After(t) && t.Sub(cur) <= slack
}

// limitTo makes t the latest deadline from now on and applies it.
func (d *deadlines) limitTo(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.limit = t
	d.read, d.write = t, t
	_ = d.nc.SetDeadline(t)
}
