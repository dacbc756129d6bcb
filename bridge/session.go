package bridge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegw/edgegw/bridge/outbox"
)

// connectTimeout bounds dialing, the TLS handshake and waiting for CONNACK.
const connectTimeout = 10 * time.Second

// Run keeps the upstream session up until ctx ends: it connects to each
// endpoint in turn, drains the outbox in order through a bounded in-flight
// window, and after a failure waits a full-jitter backoff (a random time
// between zero and a ceiling that doubles per failure up to BackoffMax), so a
// fleet that lost the same broker does not come back in one wave, and a
// broken configuration never spins.
func (b *Bridge) Run(ctx context.Context) error {
	attempt := 0
	lastCause := ""
	downSince := time.Time{}
	for i := 0; ; i++ {
		ep := b.o.Endpoints[i%len(b.o.Endpoints)]
		b.mu.Lock()
		b.endpoint = ep.Addr
		b.mu.Unlock()
		connected, err := b.session(ctx, ep)
		if ctx.Err() != nil {
			return nil
		}
		cause := b.explain(err, ep.Addr)
		b.mu.Lock()
		b.lastErr = cause
		b.mu.Unlock()
		if connected {
			attempt = 0
			b.linkDowns.Add(1)
			downSince = time.Now()
			b.log.Warn("upstream link down", "broker", ep.Addr, "cause", cause, "backlog", b.o.Outbox.Stats().Messages)
			lastCause = cause
		} else {
			b.connectFailures.Add(1)
			if downSince.IsZero() {
				downSince = time.Now()
			}
			if cause != lastCause {
				b.log.Warn("cannot connect upstream", "broker", ep.Addr, "cause", cause)
				lastCause = cause
			} else {
				b.log.Debug("still cannot connect upstream", "broker", ep.Addr, "attempt", attempt+1, "down_for", time.Since(downSince).Round(time.Second))
			}
			attempt++
		}
		ceiling := b.o.BackoffMin << min(attempt, 20)
		if ceiling > b.o.BackoffMax || ceiling <= 0 {
			ceiling = b.o.BackoffMax
		}
		wait := time.Duration(rand.Int64N(int64(ceiling) + 1))
		if connected {
			wait = min(wait, b.o.BackoffMin) // a link that was up comes back quickly
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (b *Bridge) explain(err error, addr string) string {
	if err == nil {
		return "closed"
	}
	if b.o.Explain != nil {
		return b.o.Explain(err, addr)
	}
	return err.Error()
}

// conn is one live upstream connection.
type conn struct {
	b   *Bridge
	nc  net.Conn
	br  *bufio.Reader
	ver byte

	wmu     sync.Mutex
	bw      *bufio.Writer
	scratch bytes.Buffer
	werr    error
	flushC  chan struct{}
	dl      deadlines // every deadline goes through it (deadline.go)

	imu      sync.Mutex
	inflight map[uint16]uint64 // packet id -> outbox seq
	slots    chan struct{}     // window: one token per message in flight
	maxQoS   byte

	subacked chan struct{}
	pendRel  map[uint16]bool // inbound QoS 2 awaiting PUBREL

	hooks // Will and OnConnect (hooks.go)
}

// session runs one connection. connected reports whether CONNACK accepted us.
func (b *Bridge) session(ctx context.Context, ep Endpoint) (connected bool, err error) {
	nc, err := b.dial(ctx, ep)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	c := &conn{
		b: b, nc: nc, br: bufio.NewReaderSize(nc, 32<<10), ver: b.o.Version,
		bw: bufio.NewWriterSize(nc, 32<<10), flushC: make(chan struct{}, 1),
		inflight: map[uint16]uint64{}, slots: make(chan struct{}, b.o.Inflight), maxQoS: 2,
		subacked: make(chan struct{}), pendRel: map[uint16]bool{},
	}
	c.dl.nc = nc
	// A stop during the handshake ends it now, not after connectTimeout.
	stopHandshake := context.AfterFunc(ctx, func() { c.dl.limitTo(time.Unix(1, 0)) })
	present, err := c.handshake()
	stopHandshake()
	if err != nil {
		return false, err
	}
	b.connects.Add(1)
	b.linkUp.Store(true)
	defer b.linkUp.Store(false)
	defer b.inflightN.Store(0)
	st := b.o.Outbox.Stats()
	b.log.Info("upstream link up", "broker", ep.Addr, "session_present", present, "backlog", st.Messages, "backlog_bytes", st.Bytes)

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(sctx); err != nil {
				cancel(err)
			}
		}()
	}
	// Unblock reads and writes when the session ends.
	stopWatch := context.AfterFunc(sctx, func() { c.dl.limitTo(time.Unix(1, 0)) })
	defer stopWatch()

	run(c.reader)
	run(c.flusher)
	run(c.pinger)
	if err := c.subscribe(sctx); err != nil {
		cancel(err)
	} else if err := c.onConnect(sctx); err != nil {
		cancel(err)
	} else {
		b.o.Outbox.Rewind()
		// From now on QoS 1 messages may wait in memory for their PUBACK
		// instead of going to disk first.
		b.o.Outbox.SetLinkUp(true)
		run(c.sender)
		if b.o.QoS0 != nil {
			run(c.sendQoS0)
		}
	}
	<-sctx.Done()
	// Link lost (or stopping): what waits in memory goes to disk now, and
	// new messages go to disk until the next session is up.
	b.o.Outbox.SetLinkUp(false)
	wg.Wait()
	cause := context.Cause(sctx)
	if errors.Is(cause, context.Canceled) && ctx.Err() != nil {
		c.publishWill()
		c.sendDisconnect()
		return true, nil
	}
	return true, cause
}

func (b *Bridge) dial(ctx context.Context, ep Endpoint) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var nc net.Conn
	var err error
	if b.o.Dial != nil {
		nc, err = b.o.Dial(dctx, ep.Addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(dctx, "tcp", ep.Addr)
	}
	if err != nil {
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if !ep.TLS {
		return nc, nil
	}
	if b.o.TLS == nil {
		nc.Close()
		return nil, errors.New("bridge: a TLS endpoint but no TLS configuration")
	}
	tc, err := b.o.TLS()
	if err != nil {
		nc.Close()
		return nil, err
	}
	if tc.ServerName == "" {
		host, _, _ := net.SplitHostPort(ep.Addr)
		tc = tc.Clone()
		tc.ServerName = host
	}
	tlsConn := tls.Client(nc, tc)
	if err := tlsConn.HandshakeContext(dctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tlsConn, nil
}

// handshake sends CONNECT and reads CONNACK.
func (c *conn) handshake() (sessionPresent bool, err error) {
	o := &c.b.o
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: c.ver,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			Clean:            o.CleanSession,
			Keepalive:        uint16(min(o.Keepalive/time.Second, 65535)),
			ClientIdentifier: o.ClientID,
		},
	}
	if c.ver == 5 && !o.CleanSession {
		pk.Properties.SessionExpiryInterval = 7 * 24 * 3600
		pk.Properties.SessionExpiryIntervalFlag = true
	}
	if o.Username != "" {
		pk.Connect.UsernameFlag = true
		pk.Connect.Username = []byte(o.Username)
	}
	if o.Password != nil {
		pk.Connect.PasswordFlag = true
		pk.Connect.Password = o.Password
	}
	c.setWill(&pk)
	c.dl.set(time.Now().Add(connectTimeout))
	if err := c.write(pk); err != nil {
		return false, err
	}
	if err := c.flush(); err != nil {
		return false, err
	}
	ack, err := readPacket(c.br, c.ver)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return false, fmt.Errorf("the server closed the connection before answering CONNECT: %w", err)
		}
		return false, err
	}
	c.dl.set(time.Time{})
	if ack.FixedHeader.Type != packets.Connack {
		return false, fmt.Errorf("the server answered CONNECT with %s instead of CONNACK", packetName(ack.FixedHeader.Type))
	}
	if ack.ReasonCode != 0 {
		return false, &RefusedError{Code: ack.ReasonCode}
	}
	if c.ver == 5 && ack.Properties.MaximumQos < 2 && ack.Properties.MaximumQosFlag {
		c.maxQoS = ack.Properties.MaximumQos
		c.b.log.Warn("the upstream broker allows at most this QoS; QoS 2 messages are sent at that QoS (no exactly-once)", "maximum_qos", c.maxQoS)
	}
	return ack.SessionPresent, nil
}

// write encodes a packet into the write buffer and asks the flusher to send.
func (c *conn) write(pk packets.Packet) error {
	pk.ProtocolVersion = c.ver
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	c.scratch.Reset()
	if err := encode(&c.scratch, pk); err != nil {
		return fmt.Errorf("encode %s: %w", packetName(pk.FixedHeader.Type), err)
	}
	if _, err := c.bw.Write(c.scratch.Bytes()); err != nil {
		c.werr = err
		return err
	}
	select {
	case c.flushC <- struct{}{}:
	default:
	}
	return nil
}

func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	if c.bw.Buffered() == 0 {
		return nil
	}
	c.dl.setWrite(time.Now().Add(c.b.o.Keepalive + connectTimeout))
	if err := c.bw.Flush(); err != nil {
		c.werr = err
		return err
	}
	return nil
}

// flusher sends buffered packets whenever there are some: many packets
// written close together leave in one TCP segment and one TLS record.
func (c *conn) flusher(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.flushC:
			if err := c.flush(); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
	}
}

// pinger sends PINGREQ every keepalive; the reader's deadline catches a dead
// or stalled link after 1.5 keepalives with nothing received.
func (c *conn) pinger(ctx context.Context) error {
	t := time.NewTicker(c.b.o.Keepalive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}); err != nil {
				return err
			}
		}
	}
}

// sendDisconnect says goodbye within a second, however stalled the link:
// the flush cannot move its deadline past that.
func (c *conn) sendDisconnect() {
	c.dl.limitTo(time.Now().Add(time.Second))
	c.wmu.Lock()
	c.werr = nil
	c.wmu.Unlock()
	_ = c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	_ = c.flush()
}

// subscribe subscribes the remote filters of In rules and waits for SUBACK
// before any PUBLISH goes out, so its packet identifier cannot collide with
// a message in flight.
func (c *conn) subscribe(ctx context.Context) error {
	var subs packets.Subscriptions
	for _, r := range c.b.o.Rules {
		if r.Direction&In != 0 {
			subs = append(subs, packets.Subscription{Filter: r.remoteFilter(), Qos: r.QoS})
		}
	}
	if len(subs) == 0 {
		return nil
	}
	if err := c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1, Filters: subs}); err != nil {
		return err
	}
	t := time.NewTimer(connectTimeout)
	defer t.Stop()
	select {
	case <-c.subacked:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return errors.New("no SUBACK from the server within 10s")
	}
}

// sender feeds the window from the outbox, oldest first.
func (c *conn) sender(ctx context.Context) error {
	b := c.b
	var tick *time.Ticker
	if b.o.ReplayRate > 0 {
		tick = time.NewTicker(time.Second / time.Duration(b.o.ReplayRate))
		defer tick.Stop()
	}
	for {
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		m, err := b.o.Outbox.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("outbox: %w", err)
		}
		if tick != nil {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return nil
			}
		}
		id := pid(m.Seq)
		q := min(m.QoS, c.maxQoS)
		if q == 0 {
			// Upstream allows no QoS 1/2 (MQTT 5 maximum QoS): best effort.
			<-c.slots
			if err := c.write(publish(m, 0, 0, false)); err != nil {
				return err
			}
			_ = b.o.Outbox.Ack(m.Seq)
			continue
		}
		c.imu.Lock()
		c.inflight[id] = m.Seq
		b.inflightN.Store(int64(len(c.inflight)))
		c.imu.Unlock()
		if m.Released && q == 2 {
			err = c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: id})
		} else {
			b.mu.Lock()
			dup := m.Seq <= b.maxSent
			if m.Seq > b.maxSent {
				b.maxSent = m.Seq
			}
			b.mu.Unlock()
			err = c.write(publish(m, q, id, dup))
			b.sent.Add(1)
		}
		if err != nil {
			return err
		}
	}
}

func publish(m outbox.Message, q byte, id uint16, dup bool) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: q, Retain: m.Retain, Dup: dup && q > 0},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		PacketID:    id,
	}
}

// sendQoS0 sends QoS 0 messages from the memory ring as they come.
func (c *conn) sendQoS0(ctx context.Context) error {
	for {
		m, err := c.b.o.QoS0.Pop(ctx)
		if err != nil {
			return nil
		}
		if err := c.write(publish(m, 0, 0, false)); err != nil {
			return err
		}
		c.b.sent.Add(1)
	}
}

// done completes a message in flight: the upstream broker has it.
func (c *conn) done(id uint16) {
	c.imu.Lock()
	seq, ok := c.inflight[id]
	if ok {
		delete(c.inflight, id)
		c.b.inflightN.Store(int64(len(c.inflight)))
	}
	c.imu.Unlock()
	if !ok {
		c.b.log.Debug("acknowledgement for a packet identifier not in flight", "id", id)
		return
	}
	if err := c.b.o.Outbox.Ack(seq); err != nil {
		c.b.log.Warn("outbox ack failed", "seq", seq, "error", err)
	}
	c.b.acked.Add(1)
	<-c.slots
}

// reader handles everything the server sends.
func (c *conn) reader(ctx context.Context) error {
	b := c.b
	idle := b.o.Keepalive + b.o.Keepalive/2
	for {
		c.dl.setRead(time.Now().Add(idle))
		pk, err := readPacket(c.br, c.ver)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("nothing heard from the server for %s (keepalive %s): the link is stalled", idle, b.o.Keepalive)
			}
			if errors.Is(err, io.EOF) {
				return errors.New("the server closed the connection")
			}
			return fmt.Errorf("read: %w", err)
		}
		switch pk.FixedHeader.Type {
		case packets.Puback, packets.Pubcomp:
			if !c.hookAcked(pk) {
				c.done(pk.PacketID)
			}
		case packets.Pubrec:
			c.imu.Lock()
			seq, ok := c.inflight[pk.PacketID]
			c.imu.Unlock()
			if !ok {
				// Not ours any more (completed before a crash): release it.
				_ = c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: pk.PacketID})
				continue
			}
			if c.ver == 5 && pk.ReasonCode >= 0x80 {
				b.log.Warn("the upstream broker refused a message", "topic_seq", seq, "reason", pk.ReasonCode)
				c.done(pk.PacketID)
				continue
			}
			id := pk.PacketID
			// PUBREL only once "PUBREC received" is on disk: after a crash we
			// then resend PUBREL, never a PUBLISH the broker has completed.
			b.o.Outbox.MarkReleased(seq, func(err error) {
				if err != nil {
					b.log.Error("outbox cannot record PUBREC; closing the link", "error", err)
					c.nc.Close()
					return
				}
				_ = c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: id})
			})
		case packets.Publish:
			if err := c.incoming(pk); err != nil {
				return err
			}
		case packets.Pubrel:
			delete(c.pendRel, pk.PacketID)
			if err := c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: pk.PacketID}); err != nil {
				return err
			}
		case packets.Suback:
			for _, rc := range pk.ReasonCodes {
				if rc >= 0x80 {
					b.log.Warn("the upstream broker refused a subscription of an \"in\" rule (check its ACL for this client)", "code", rc)
				}
			}
			select {
			case <-c.subacked:
			default:
				close(c.subacked)
			}
		case packets.Pingresp:
		case packets.Disconnect:
			return fmt.Errorf("the server sent DISCONNECT (reason 0x%02x)", pk.ReasonCode)
		default:
			b.log.Debug("ignored packet from upstream", "type", packetName(pk.FixedHeader.Type))
		}
	}
}

// incoming handles a PUBLISH that came down (rules with direction in/both).
func (c *conn) incoming(pk packets.Packet) error {
	b := c.b
	q := pk.FixedHeader.Qos
	deliver := !(q == 2 && c.pendRel[pk.PacketID])
	if deliver {
		local, ok := inRule(b.o.Rules, pk.TopicName)
		if !ok {
			b.log.Warn("message from upstream matches no \"in\" rule; dropped", "topic", pk.TopicName)
		} else if b.o.Deliver != nil {
			if err := b.o.Deliver(local, pk.Payload, q, pk.FixedHeader.Retain); err != nil {
				b.log.Warn("could not deliver a message from upstream locally", "topic", local, "error", err)
			} else {
				b.received.Add(1)
			}
		}
	}
	switch q {
	case 1:
		return c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
	case 2:
		c.pendRel[pk.PacketID] = true
		return c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: pk.PacketID})
	}
	return nil
}
