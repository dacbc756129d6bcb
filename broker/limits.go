package broker

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegw/edgegw/internal/defaults"
)

// Limits bound what one network client can cost the gateway. Each applies
// before authentication: an unauthenticated peer cannot make the broker
// allocate more than MaxPacketSize for a packet, hold a socket open without
// sending CONNECT for longer than ConnectTimeout, or open more than
// MaxConnections sockets. A client that does not read what it is sent is
// disconnected once ClientQueue bytes wait for it or a write to it takes
// longer than WriteTimeout, and nobody else waits for it meanwhile.
type Limits struct {
	// MaxPacketSize is the largest MQTT packet accepted, fixed header
	// included (0 = DefaultMaxPacketSize). A larger one is refused from its
	// fixed header, before its body is read or memory reserved for it.
	MaxPacketSize int
	// MaxConnections caps concurrent network connections (0 =
	// DefaultMaxConnections); the next one is closed as soon as accepted.
	MaxConnections int
	// ConnectTimeout is how long a new socket may take to send its CONNECT,
	// TLS handshake included (0 = DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// WriteTimeout bounds one write to a client (0 = DefaultWriteTimeout).
	WriteTimeout time.Duration
	// ClientQueue is how many bytes may wait for one client (0 =
	// DefaultClientQueue; never less than two packets of MaxPacketSize).
	ClientQueue int
}

// Defaults, sized for a Raspberry Pi Zero (512 MB): 64 connections each
// with a full queue and a largest packet in flight stay under 100 MiB.
const (
	DefaultMaxPacketSize  = 256 << 10
	DefaultMaxConnections = 64
	DefaultConnectTimeout = 10 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultClientQueue    = 1 << 20
)

// limits is Limits in force, with the counters of what they refused.
type limits struct {
	maxPacket      int
	maxConns       int
	connectTimeout time.Duration
	writeTimeout   time.Duration
	queue          int
	log            *slog.Logger // rate-limited: an attack repeats per socket

	conns   atomic.Int64
	writers sync.WaitGroup

	slowDropped      atomic.Uint64
	connectTimeouts  atomic.Uint64
	oversized        atomic.Uint64
	connsRefused     atomic.Uint64
	connectionsTotal atomic.Uint64
}

func newLimits(l Limits, log *slog.Logger) *limits {
	m := &limits{
		maxPacket: l.MaxPacketSize, maxConns: l.MaxConnections, connectTimeout: l.ConnectTimeout,
		writeTimeout: l.WriteTimeout, queue: l.ClientQueue, log: log,
	}
	defaults.Set(&m.maxPacket, DefaultMaxPacketSize)
	defaults.Set(&m.maxConns, DefaultMaxConnections)
	defaults.Set(&m.connectTimeout, DefaultConnectTimeout)
	defaults.Set(&m.writeTimeout, DefaultWriteTimeout)
	defaults.Set(&m.queue, DefaultClientQueue)
	m.queue = max(m.queue, 2*m.maxPacket)
	return m
}

// admit takes a connection slot; false means the cap is reached and the
// connection must be closed.
func (m *limits) admit(remote net.Addr) bool {
	if m.conns.Add(1) > int64(m.maxConns) {
		m.conns.Add(-1)
		m.connsRefused.Add(1)
		m.log.Warn("connection refused: too many connections to the local broker; raise [broker] max_connections if they are all legitimate",
			"remote", addrString(remote), "max_connections", m.maxConns)
		return false
	}
	m.connectionsTotal.Add(1)
	return true
}

func (m *limits) release() { m.conns.Add(-1) }

// ended looks at why a connection ended and counts a refused packet.
func (m *limits) ended(remote net.Addr, err error) {
	if errors.Is(err, errMochiPacketTooLarge) {
		m.oversized.Add(1)
		m.log.Warn("client disconnected: it sent a packet larger than [broker] max_packet_size (refused from its header, nothing allocated)",
			"remote", addrString(remote), "max_packet_size", m.maxPacket)
	}
}

func (m *limits) connectTimedOut(remote net.Addr) {
	m.connectTimeouts.Add(1)
	m.log.Warn("connection closed: no CONNECT within [broker] connect_timeout", "remote", addrString(remote), "connect_timeout", m.connectTimeout)
}

func (m *limits) slowConsumer(client string, remote net.Addr, why string, queued int) {
	m.slowDropped.Add(1)
	m.log.Warn("slow client disconnected: it does not read what it is sent; other clients are not held up (see [broker] write_timeout and client_queue)",
		"client", client, "remote", addrString(remote), "reason", why, "queued_bytes", queued)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
