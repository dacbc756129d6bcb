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
//
// clients is mochi's Listeners.ClientsWg, which its Close waits on after
// closing the listeners. mochi counts a client into it inside
// EstablishConnection, on the connection's goroutine, so a connection
// accepted just as the broker closes counted itself from zero while Close
// waited: a race on the WaitGroup (go test -race, TestRefusalReachesClientBeforeClose).
// The accept loop counts each connection first, under mu, and not once
// Close has begun, so every count happens before that Wait.
type netListener struct {
	id      string
	ln      net.Listener
	lim     *limits
	clients *sync.WaitGroup
	once    sync.Once

	mu     sync.Mutex
	closed bool
}

func (l *netListener) ID() string              { return l.id }
func (l *netListener) Address() string         { return l.ln.Addr().String() }
func (l *netListener) Protocol() string        { return "tcp" }
func (l *netListener) Init(*slog.Logger) error { return nil }
func (l *netListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
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
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			l.lim.release()
			_ = conn.Close()
			return
		}
		l.clients.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.clients.Done()
			defer l.lim.release()
			gc := newGuardConn(conn, l.lim)
			err := establish(l.id, gc)
			_ = gc.Close() // mochi has closed it too; this makes sure the writer ends
			l.lim.ended(remote, err)
		}()
	}
}
