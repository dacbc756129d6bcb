package broker

import (
	"log/slog"
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// netListener adapts an already-bound net.Listener to mochi's Listener. It
// applies the connection cap as soon as a socket is accepted and hands mochi
// each connection wrapped in a guardConn (conn.go).
type netListener struct {
	id   string
	ln   net.Listener
	lim  *limits
	once sync.Once
}

func (l *netListener) ID() string              { return l.id }
func (l *netListener) Address() string         { return l.ln.Addr().String() }
func (l *netListener) Protocol() string        { return "tcp" }
func (l *netListener) Init(*slog.Logger) error { return nil }
func (l *netListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() { l.ln.Close() })
	closeClients(l.id)
}

func (l *netListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		remote := conn.RemoteAddr()
		if !l.lim.admit(remote) {
			_ = conn.Close()
			continue
		}
		go func() {
			defer l.lim.release()
			gc := newGuardConn(conn, l.lim)
			err := establish(l.id, gc)
			_ = gc.Close() // mochi has closed it too; this makes sure the writer ends
			l.lim.ended(remote, err)
		}()
	}
}
