// Package netproxy is a TCP proxy that tests and benchmarks use to break the
// link between the gateway and its upstream broker on purpose: cut (close
// every connection and refuse new ones), reset (RST), stall (stop moving
// bytes while keeping the connections open) and restore. It listens on
// loopback only.
//
// Concurrency: Cut, Reset, Stall, Restore and Close may be called from any
// goroutine, while traffic flows. Each connection has two copying
// goroutines; the proxy's mutex guards the connection set and the
// down/stalled state and is never held while a goroutine reads, writes or
// waits out a stall. Close closes every connection, ends any stall, and
// waits for every goroutine.
package netproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards connections from its own address to a target.
type Proxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	conns   map[*pair]struct{}
	down    bool
	stalled bool
	unstall chan struct{}

	accepted atomic.Uint64
	wg       sync.WaitGroup
	closed   chan struct{}
}

type pair struct{ a, b net.Conn }

// New starts a proxy on 127.0.0.1 (a free port) to target.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, conns: map[*pair]struct{}{}, unstall: make(chan struct{}), closed: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the address to connect to instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted counts connections accepted while up (connects per second in
// fleet benchmarks).
func (p *Proxy) Accepted() uint64 { return p.accepted.Load() }

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *Proxy) handle(c net.Conn) {
	u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	pr := &pair{c, u}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[pr] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.copy(u, c) }()
	go func() { defer wg.Done(); p.copy(c, u) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, pr)
	p.mu.Unlock()
}

func (p *Proxy) copy(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.waitUnstalled()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			return
		}
	}
}

func (p *Proxy) waitUnstalled() {
	p.mu.Lock()
	stalled, ch := p.stalled, p.unstall
	p.mu.Unlock()
	if stalled {
		select {
		case <-ch:
		case <-p.closed:
		}
	}
}

// Cut closes every connection (FIN) and refuses new ones until Restore.
func (p *Proxy) Cut() { p.breakAll(false) }

// Reset aborts every connection with RST and refuses new ones until Restore.
func (p *Proxy) Reset() { p.breakAll(true) }

func (p *Proxy) breakAll(rst bool) {
	p.mu.Lock()
	p.down = true
	conns := make([]*pair, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		if rst {
			for _, x := range []net.Conn{c.a, c.b} {
				if tc, ok := x.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
			}
		}
		c.a.Close()
		c.b.Close()
	}
}

// Stall stops moving bytes (connections stay open) until Restore.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled = true
		p.unstall = make(chan struct{})
	}
}

// Restore accepts connections again and ends a stall.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
	if p.stalled {
		p.stalled = false
		close(p.unstall)
	}
}

// Close stops the proxy and every connection.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut()
	p.mu.Lock()
	select {
	case <-p.closed:
	default:
		close(p.closed)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
