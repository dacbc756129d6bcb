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
	_ = d.nc.SetDeadline(d.capped(t))
}

// setWrite sets the write deadline to t, within the limit.
func (d *deadlines) setWrite(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_ = d.nc.SetWriteDeadline(d.capped(t))
}

// setRead sets the read deadline to t, within the limit.
func (d *deadlines) setRead(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	_ = d.nc.SetReadDeadline(d.capped(t))
}

// limitTo makes t the latest deadline from now on and applies it.
func (d *deadlines) limitTo(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.limit = t
	_ = d.nc.SetDeadline(t)
}
