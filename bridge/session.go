package bridge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/edgegw/edgegw/internal/sockio"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegw/edgegw/bridge/deadletter"
	"github.com/edgegw/edgegw/bridge/outbox"
)

// Run keeps the upstream session up until ctx ends: it connects to each
// endpoint in turn, drains the outbox in order through a bounded in-flight
// window, and after a failure waits per the backoff policy (see backoff):
// a link that was up and useful comes back at once, a link that flaps or a
// broker that refuses us waits longer each time up to BackoffMax, and a
// broken configuration never spins.
func (b *Bridge) Run(ctx context.Context) error {
	bo := backoff{min: b.o.BackoffMin, max: b.o.BackoffMax}
	lastCause := ""
	downSince := time.Time{}
	for i := 0; ; i++ {
		ep := b.o.Endpoints[i%len(b.o.Endpoints)]
		b.mu.Lock()
		b.endpoint = ep.Addr
		b.mu.Unlock()
		end := b.session(ctx, ep)
		if ctx.Err() != nil {
			return nil
		}
		cause := b.explain(end.err, ep.Addr, end.connected)
		b.mu.Lock()
		b.lastErr = cause
		b.mu.Unlock()
		k := end.kind()
		wait := bo.next(k)
		switch k {
		case endStable:
			b.linkDowns.Add(1)
			downSince = time.Now()
			b.log.Warn("upstream link down", "broker", ep.Addr, "cause", cause, "up_for", end.up.Round(time.Millisecond), "backlog", b.o.Outbox.Stats().Messages)
			lastCause = cause
		case endFlap:
			b.linkDowns.Add(1)
			n := b.flaps.Add(1)
			if downSince.IsZero() {
				downSince = time.Now()
			}
			b.log.Warn("upstream link flapped: it went down soon after it came up; backing off", "broker", ep.Addr, "cause", cause,
				"up_for", end.up.Round(time.Millisecond), "acknowledged_anything", end.acked, "flaps", n, "retry_in", wait.Round(time.Millisecond))
			lastCause = cause
		default:
			b.connectFailures.Add(1)
			if downSince.IsZero() {
				downSince = time.Now()
			}
			if cause != lastCause {
				b.log.Warn("cannot connect upstream", "broker", ep.Addr, "cause", cause, "retry_in", wait.Round(time.Millisecond))
				lastCause = cause
			} else {
				b.log.Debug("still cannot connect upstream", "broker", ep.Addr, "attempt", bo.attempt, "down_for", time.Since(downSince).Round(time.Second))
			}
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

// explain turns why a session ended into a sentence. Once CONNACK had
// accepted us, TCP, TLS and MQTT all worked: the session's own error says
// what happened, and the connection-level diagnosis (firewall, certificates,
// "the port speaks plain MQTT") would send the operator the wrong way.
func (b *Bridge) explain(err error, addr string, connected bool) string {
	if err == nil {
		return "closed"
	}
	var nc *ErrNoConnack
	if connected || b.o.Explain == nil || errors.As(err, &nc) {
		return err.Error()
	}
	cause := b.o.Explain(err, addr)
	var ref *RefusedError
	if errors.As(err, &ref) && ref.Reason != "" {
		cause += fmt.Sprintf(" (the server said %q)", ref.Reason)
	}
	return cause
}

// conn is one live upstream connection.
type conn struct {
	b    *Bridge
	nc   net.Conn
	sock bool // nc is (TLS over) a kernel socket: direct sends write at once
	br   *bufio.Reader
	ver  byte

	wmu     sync.Mutex
	bw      *bufio.Writer
	scratch bytes.Buffer
	werr    error
	flushC  chan struct{}
	dl      deadlines // every deadline goes through it (deadline.go)

	imu      sync.Mutex
	inflight map[uint16]outbox.Message // packet id -> message
	inBytes  int                       // topic and payload bytes of the messages in inflight
	slots    chan struct{}             // window: one token per message in flight
	lim      serverLimits

	// smu is held from taking a message off the outbox to writing it into
	// bw, by the sender and by direct sends (direct.go), so the wire has
	// the outbox's order. Lock order: smu, then wmu, then the outbox's.
	held bool // the reader holds Options.Batch (reader goroutine only)

	smu      sync.Mutex
	ended    bool        // under smu: the session is over; direct sends stop
	kickWant atomic.Bool // a direct send is asked for (direct.go)
	cancel   context.CancelCauseFunc

	// relC hands PUBREL packet ids from the outbox committer (MarkReleased
	// callbacks) to the releaser, which writes them: the committer must
	// never wait on the network. Its capacity is the window, and each
	// message in flight sends at most one PUBREL per session.
	relC chan uint16

	sentAny  atomic.Bool  // a QoS 1/2 PUBLISH or PUBREL went out
	ackedAny atomic.Bool  // the server acknowledged one
	lastAck  atomic.Int64 // unix nanos of the last acknowledgement (or of the first send after silence)

	subacked chan struct{}
	subID    uint16
	pendRel  map[uint16]bool // inbound QoS 2 awaiting PUBREL

	// Live first (see livefirst.go); used by the sender goroutine only.
	nextC     chan outbox.Message
	nextErr   chan error
	liveSent  map[uint64]bool
	nextMax   uint64
	firstLive uint64

	hooks // Will and OnConnect (hooks.go)
}

// session runs one connection until it ends.
func (b *Bridge) session(ctx context.Context, ep Endpoint) sessionEnd {
	nc, sock, err := b.dial(ctx, ep)
	if err != nil {
		return sessionEnd{err: err}
	}
	defer nc.Close()
	c := &conn{
		b: b, nc: nc, sock: sock, br: bufio.NewReaderSize(nc, 32<<10), ver: b.o.Version,
		bw: bufio.NewWriterSize(nc, 32<<10), flushC: make(chan struct{}, 1),
		inflight: map[uint16]outbox.Message{},
		subacked: make(chan struct{}), pendRel: map[uint16]bool{},
	}
	c.dl.nc = nc
	if rn := rawReadNotify(nc); rn != nil {
		rn.before = c.release
	}
	// A stop during the handshake ends it now, not after connectTimeout.
	stopHandshake := context.AfterFunc(ctx, func() { c.dl.limitTo(time.Unix(1, 0)) })
	present, err := c.handshake()
	stopHandshake()
	if err != nil {
		return sessionEnd{err: err}
	}
	upAt := time.Now()
	window := min(b.o.Inflight, c.lim.receiveMax)
	c.slots = make(chan struct{}, window)
	c.relC = make(chan uint16, window)
	b.connects.Add(1)
	b.window.Store(int64(window))
	b.linkUp.Store(true)
	defer b.linkUp.Store(false)
	defer b.inflightN.Store(0)
	st := b.o.Outbox.Stats()
	b.log.Info("upstream link up", "broker", ep.Addr, "session_present", present, "backlog", st.Messages, "backlog_bytes", st.Bytes, "window", window)

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	c.cancel = cancel
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
	run(c.releaser)
	if err := c.subscribe(sctx); err != nil {
		cancel(err)
	} else if err := c.onConnect(sctx); err != nil {
		cancel(err)
	} else {
		b.o.Outbox.Rewind()
		// From now on QoS 1 messages may wait in memory for their PUBACK
		// instead of going to disk first.
		b.o.Outbox.SetLinkUp(true)
		if backlogReader := c.startLive(st.Messages); backlogReader != nil {
			run(backlogReader)
		}
		if b.direct {
			b.cur.Store(c)
		}
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
	// No direct send of this session takes a message from now on (the
	// next session's Rewind comes after this).
	c.smu.Lock()
	c.ended = true
	c.smu.Unlock()
	b.cur.CompareAndSwap(c, nil)
	end := sessionEnd{connected: true, up: time.Since(upAt), sent: c.sentAny.Load(), acked: c.ackedAny.Load()}
	cause := context.Cause(sctx)
	if errors.Is(cause, context.Canceled) && ctx.Err() != nil {
		c.publishWill()
		c.sendDisconnect()
		return end
	}
	end.err = cause
	return end
}

// dial connects to ep; sock reports that the connection is a kernel
// socket (it implements syscall.Conn), whose buffer takes a small write
// without waiting for the peer (direct.go).
func (b *Bridge) dial(ctx context.Context, ep Endpoint) (nc net.Conn, sock bool, err error) {
	dctx, cancel := context.WithTimeout(ctx, b.o.ConnectTimeout)
	defer cancel()
	if b.o.Dial != nil {
		nc, err = b.o.Dial(dctx, ep.Addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(dctx, "tcp", ep.Addr)
	}
	if err != nil {
		return nil, false, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		nc = sockio.Wrap(tc) // raw socket reads and writes (internal/sockio)
	}
	_, sock = nc.(syscall.Conn)
	if b.o.Batch != nil {
		nc = &readNotify{Conn: nc}
	}
	if !ep.TLS {
		return nc, sock, nil
	}
	if b.o.TLS == nil {
		nc.Close()
		return nil, false, errors.New("bridge: a TLS endpoint but no TLS configuration")
	}
	tc, err := b.o.TLS()
	if err != nil {
		nc.Close()
		return nil, false, err
	}
	if tc.ServerName == "" {
		host, _, _ := net.SplitHostPort(ep.Addr)
		tc = tc.Clone()
		tc.ServerName = host
	}
	tlsConn := tls.Client(nc, tc)
	if err := tlsConn.HandshakeContext(dctx); err != nil {
		nc.Close()
		return nil, false, err
	}
	return tlsConn, sock, nil
}

// handshake sends CONNECT and reads CONNACK, and takes the server's
// limits from it (MQTT 5).
func (c *conn) handshake() (sessionPresent bool, err error) {
	o := &c.b.o
	clientID := o.ClientID
	c.b.mu.Lock()
	if c.b.assignedID != "" {
		clientID = c.b.assignedID // resume the session the server named
	}
	c.b.mu.Unlock()
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: c.ver,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			Clean:            o.CleanSession,
			Keepalive:        uint16(min(o.Keepalive/time.Second, 65535)),
			ClientIdentifier: clientID,
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
	c.dl.set(time.Now().Add(o.ConnectTimeout))
	if err := c.write(pk); err != nil {
		return false, err
	}
	if err := c.flush(); err != nil {
		return false, err
	}
	ack, err := readPacket(c.br, c.ver)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "remote error" {
			// A TLS alert: in TLS 1.3 the server judges our certificate
			// after our side of the handshake, so it comes here.
			return false, err
		}
		return false, &ErrNoConnack{Version: c.ver, Err: err, Waited: o.ConnectTimeout}
	}
	c.dl.set(time.Time{})
	if ack.FixedHeader.Type != packets.Connack {
		return false, &ErrNoConnack{Version: c.ver, Got: packetName(ack.FixedHeader.Type)}
	}
	if ack.ReasonCode != 0 {
		return false, &RefusedError{Code: ack.ReasonCode, Version: c.ver, Reason: ack.Properties.ReasonString}
	}
	c.lim = limitsOf(ack, c.ver, o.Keepalive)
	c.lim.log(c.b.log, o)
	if c.lim.assignedID != "" {
		c.b.mu.Lock()
		c.b.assignedID = c.lim.assignedID
		c.b.mu.Unlock()
	}
	return ack.SessionPresent, nil
}

// write encodes a packet into the write buffer and asks the flusher to send.
func (c *conn) write(pk packets.Packet) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.writeLocked(pk); err != nil {
		return err
	}
	c.pokeFlusher()
	return nil
}

// writeLocked encodes a packet into the write buffer; wmu is held.
func (c *conn) writeLocked(pk packets.Packet) error {
	if c.werr != nil {
		return c.werr
	}
	pk.ProtocolVersion = c.ver
	c.scratch.Reset()
	if err := encode(&c.scratch, pk); err != nil {
		return fmt.Errorf("encode %s: %w", packetName(pk.FixedHeader.Type), err)
	}
	if _, err := c.bw.Write(c.scratch.Bytes()); err != nil {
		c.werr = err
		return err
	}
	return nil
}

// writePublishLocked encodes a PUBLISH of m into the write buffer; wmu is
// held.
func (c *conn) writePublishLocked(m *outbox.Message, q byte, id uint16, dup bool) error {
	if c.werr != nil {
		return c.werr
	}
	p := appendPublish(c.bw.AvailableBuffer(), m.Topic, m.Payload, q, id, m.Retain, dup && q > 0, c.ver)
	if _, err := c.bw.Write(p); err != nil {
		c.werr = err
		return err
	}
	return nil
}

func (c *conn) pokeFlusher() {
	select {
	case c.flushC <- struct{}{}:
	default:
	}
}

func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

// flushLocked sends what is buffered; wmu is held.
func (c *conn) flushLocked() error {
	if c.werr != nil {
		return c.werr
	}
	if c.bw.Buffered() == 0 {
		return nil
	}
	ka := c.lim.keepalive
	if ka <= 0 {
		ka = c.b.o.Keepalive
	}
	d := ka + c.b.o.ConnectTimeout
	c.dl.setWriteLazy(time.Now().Add(d), d/16)
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

// ackTimeout is how long messages may stay in flight with no acknowledgement
// at all before the link counts as dead: a server that reads our PUBLISHes
// and never answers them would otherwise hold them for ever while the link
// looks up (MQTT resends only on a new connection). Default: two keepalives
// plus the connect timeout (70 s with the default 30 s keepalive).
func (c *conn) ackTimeout() time.Duration {
	if c.b.o.AckTimeout > 0 {
		return c.b.o.AckTimeout
	}
	return 2*c.lim.keepalive + c.b.o.ConnectTimeout
}

// pinger sends PINGREQ every keepalive; the reader's deadline catches a dead
// or stalled link after 1.5 keepalives with nothing received, and the pinger
// a link that answers pings but acknowledges nothing (see ackTimeout).
func (c *conn) pinger(ctx context.Context) error {
	t := time.NewTicker(c.lim.keepalive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.imu.Lock()
			n := len(c.inflight)
			c.imu.Unlock()
			if silent := time.Since(time.Unix(0, c.lastAck.Load())); n > 0 && silent > c.ackTimeout() {
				return fmt.Errorf("the server acknowledged nothing for %s with %d messages in flight: the link is dead (it answers pings but not PUBLISH)", silent.Round(time.Second), n)
			}
			if err := c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}); err != nil {
				return err
			}
		}
	}
}

// releaser writes the PUBRELs the outbox committer hands over in relC.
func (c *conn) releaser(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case id := <-c.relC:
			if err := c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: id}); err != nil {
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
// before any PUBLISH goes out. Its packet identifier is the one of the next
// message never sent yet: a persistent session may still hold any message
// that was sent and not completed (a QoS 2 message waiting for PUBREL under
// its identifier), but not that one, and it is free again once SUBACK is in.
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
	c.b.mu.Lock()
	c.subID = pid(c.b.maxSent + 1)
	c.b.mu.Unlock()
	if err := c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: c.subID, Filters: subs}); err != nil {
		return err
	}
	t := time.NewTimer(c.b.o.ConnectTimeout)
	defer t.Stop()
	select {
	case <-c.subacked:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return fmt.Errorf("no SUBACK from the server within %s", c.b.o.ConnectTimeout)
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
		m, ok, err := c.nextMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("outbox: %w", err)
		}
		if !ok {
			<-c.slots // sent already (live first)
			continue
		}
		if tick != nil {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return nil
			}
		}
		// Behind any direct send that took a message before this one.
		c.smu.Lock()
		c.wmu.Lock()
		err = c.sendLocked(m)
		c.wmu.Unlock()
		c.smu.Unlock()
		if err != nil {
			return err
		}
		c.pokeFlusher()
		if c.kickWant.Load() {
			c.kick() // asked for while this goroutine held smu
		}
	}
}

// sendLocked puts m into the window and its PUBLISH (or PUBREL) into the
// write buffer; it holds a window slot, which it gives back if m does not
// go into the window. smu and wmu are held.
func (c *conn) sendLocked(m outbox.Message) error {
	b := c.b
	id := pid(m.Seq)
	q := min(m.QoS, c.maxQoS())
	if cause := c.tooLarge(m, q); cause != "" {
		<-c.slots
		return c.deadLetter(m, 0x95, cause)
	}
	if q == 0 {
		// Upstream allows no QoS 1/2 (MQTT 5 maximum QoS): best effort.
		<-c.slots
		if err := c.writePublishLocked(&m, 0, 0, false); err != nil {
			return err
		}
		_ = b.o.Outbox.Ack(m.Seq)
		return nil
	}
	sent := m
	sent.QoS = q
	c.imu.Lock()
	if len(c.inflight) == 0 {
		c.lastAck.Store(time.Now().UnixNano()) // the silence starts now
	}
	c.inflight[id] = sent
	c.inBytes += len(m.Topic) + len(m.Payload)
	b.inflightN.Store(int64(len(c.inflight)))
	c.imu.Unlock()
	if !c.sentAny.Load() {
		c.sentAny.Store(true)
	}
	if m.Released && q == 2 {
		return c.writeLocked(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: id})
	}
	b.mu.Lock()
	dup := m.Seq <= b.maxSent
	if m.Seq > b.maxSent {
		b.maxSent = m.Seq
	}
	b.mu.Unlock()
	b.sent.Add(1)
	return c.writePublishLocked(&m, q, id, dup)
}

// tooLarge says why m must not be sent at QoS q, or "": over the server's
// Maximum Packet Size, or over the configured max_payload.
func (c *conn) tooLarge(m outbox.Message, q byte) string {
	if size := publishSize(m.Topic, m.Payload, q, c.ver); c.lim.maxPacket > 0 && size > int(c.lim.maxPacket) {
		return fmt.Sprintf("the message is %d bytes as a PUBLISH, over the server's Maximum Packet Size of %d bytes", size, c.lim.maxPacket)
	}
	if mp := c.b.o.MaxPayload; mp > 0 && len(m.Payload) > mp {
		return fmt.Sprintf("the payload is %d bytes, over upstream.max_payload of %d bytes (the broker's documented limit)", len(m.Payload), mp)
	}
	return ""
}

// maxQoS is the highest QoS this session sends at.
func (c *conn) maxQoS() byte {
	if c.b.qos2Downgraded.Load() {
		return min(c.lim.maxQoS, 1)
	}
	return c.lim.maxQoS
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
		if cause := c.tooLarge(m, 0); cause != "" {
			if err := c.deadLetter(m, 0x95, cause); err != nil {
				return err
			}
			continue
		}
		if err := c.write(publish(m, 0, 0, false)); err != nil {
			return err
		}
		c.b.sent.Add(1)
	}
}

// take removes a message from the window: the server answered it.
func (c *conn) take(id uint16) (outbox.Message, bool) {
	c.imu.Lock()
	m, ok := c.inflight[id]
	if ok {
		delete(c.inflight, id)
		c.inBytes -= len(m.Topic) + len(m.Payload)
		c.b.inflightN.Store(int64(len(c.inflight)))
		c.lastAck.Store(time.Now().UnixNano())
	}
	c.imu.Unlock()
	if ok {
		if !c.ackedAny.Load() {
			c.ackedAny.Store(true)
		}
		<-c.slots
	}
	return m, ok
}

// done completes a message in flight: the upstream broker has it.
func (c *conn) done(id uint16) {
	m, ok := c.take(id)
	if !ok {
		c.b.log.Debug("acknowledgement for a packet identifier not in flight", "id", id)
		return
	}
	c.complete(m)
}

// complete acknowledges m, taken from the window, in the outbox.
func (c *conn) complete(m outbox.Message) {
	if err := c.b.o.Outbox.Ack(m.Seq); err != nil {
		c.b.log.Warn("outbox ack failed", "seq", m.Seq, "error", err)
	}
	c.b.acked.Add(1)
}

// refused handles a PUBACK or PUBREC with a reason code of 0x80 or more.
// A permanent refusal moves the message to the dead-letter store and the
// window goes on; a transient one ends the session so that, after a backoff,
// the same message is sent again first (the messages behind it that were
// already in flight may have been accepted meanwhile: per-topic order holds
// for everything not yet sent). A message refused transiently
// maxTransientRefusals times in a row is treated as refused for good.
func (c *conn) refused(id uint16, code byte, reason string) error {
	b := c.b
	m, ok := c.take(id)
	if !ok {
		return nil
	}
	what := reasonText(code, reason)
	if !permanentRefusal(code) {
		b.mu.Lock()
		if b.transientSeq != m.Seq {
			b.transientSeq, b.transientN = m.Seq, 0
		}
		b.transientN++
		n := b.transientN
		b.mu.Unlock()
		b.transient.Add(1)
		if n < maxTransientRefusals {
			return fmt.Errorf("the server refused a message for now (%s, on %s); backing off to send it again", what, m.Topic)
		}
		what = fmt.Sprintf("%s, %d times in a row", what, n)
	}
	return c.deadLetter(m, code, "the server refused it: "+what)
}

// deadLetter moves a message the server will not take to the dead-letter
// store and acknowledges it in the outbox, so the messages behind it go on.
// If the store cannot take it (full, or none configured) it is dropped,
// counted and logged at Error; if the store fails, the session ends and the
// message stays in the outbox.
func (c *conn) deadLetter(m outbox.Message, code byte, cause string) error {
	b := c.b
	attrs := []any{"topic", m.Topic, "qos", m.QoS, "bytes", len(m.Payload), "cause", cause}
	if b.o.DeadLetter == nil {
		b.deadDropped.Add(1)
		b.log.Error("the upstream broker will not take a message and there is no dead-letter store: dropped", attrs...)
	} else if id, err := b.o.DeadLetter.Add(deadletter.Entry{Code: code, Cause: cause, Topic: m.Topic, QoS: m.QoS, Retain: m.Retain, Payload: m.Payload}); errors.Is(err, deadletter.ErrFull) {
		b.deadDropped.Add(1)
		b.log.Error("the upstream broker will not take a message and the dead-letter store is full: dropped", append(attrs, "error", err)...)
	} else if err != nil {
		return fmt.Errorf("dead-letter store: %w", err)
	} else {
		b.deadLettered.Add(1)
		if b.firstOfCause(code) {
			b.log.Warn("the upstream broker will not take a message; it is kept in the dead-letter store and the messages behind it go on (edgegw deadletter list; later ones of this cause are logged at debug)", append(attrs, "deadletter_id", id)...)
		} else {
			b.log.Debug("message moved to the dead-letter store", append(attrs, "deadletter_id", id)...)
		}
	}
	if m.QoS > 0 {
		if err := b.o.Outbox.Ack(m.Seq); err != nil {
			b.log.Warn("outbox ack failed", "seq", m.Seq, "error", err)
		}
	}
	return nil
}

// readNotify is the upstream connection under TLS when Options.Batch is
// set: before each read from the network, the reader releases what it
// held (before is set once the session is made, before any read of the
// reader goroutine).
type readNotify struct {
	net.Conn
	before func()
}

func (r *readNotify) Read(p []byte) (int, error) {
	if r.before != nil {
		r.before()
	}
	return r.Conn.Read(p)
}

// rawReadNotify finds the readNotify under nc (or nc itself), or nil.
func rawReadNotify(nc net.Conn) *readNotify {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	rn, _ := nc.(*readNotify)
	return rn
}

// hold holds Options.Batch for a completion, once per read (reader
// goroutine only).
func (c *conn) hold() {
	if bt := c.b.o.Batch; bt != nil && !c.held {
		c.held = true
		bt.Hold()
	}
}

// release ends the reader's hold, if any: the local acknowledgements of
// what it completed go out (reader goroutine only).
func (c *conn) release() {
	if c.held {
		c.held = false
		c.b.o.Batch.Release()
	}
}

// reader handles everything the server sends.
func (c *conn) reader(ctx context.Context) error {
	defer c.release()
	b := c.b
	idle := c.lim.keepalive + c.lim.keepalive/2
	for {
		c.dl.setReadLazy(time.Now().Add(idle), idle/16)
		pk, err := readPacket(c.br, c.ver)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("nothing heard from the server for %s (keepalive %s): the link is stalled", idle, c.lim.keepalive)
			}
			if errors.Is(err, io.EOF) {
				return errors.New("the server closed the connection (without a DISCONNECT saying why)")
			}
			return fmt.Errorf("read: %w", err)
		}
		switch pk.FixedHeader.Type {
		case packets.Puback:
			if c.hookAcked(pk) {
				continue
			}
			if c.ver == 5 && pk.ReasonCode >= 0x80 {
				if err := c.refused(pk.PacketID, pk.ReasonCode, pk.Properties.ReasonString); err != nil {
					return err
				}
				continue
			}
			m, ok := c.take(pk.PacketID)
			if !ok {
				b.log.Debug("acknowledgement for a packet identifier not in flight", "id", pk.PacketID)
				continue
			}
			if m.QoS == 2 {
				c.qos2Downgrade()
			}
			c.hold()
			c.complete(m)
		case packets.Pubcomp:
			c.hold()
			c.done(pk.PacketID)
		case packets.Pubrec:
			c.imu.Lock()
			m, ok := c.inflight[pk.PacketID]
			c.imu.Unlock()
			if !ok {
				// Not ours any more (completed before a crash): release it.
				if err := c.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: pk.PacketID}); err != nil {
					return err
				}
				continue
			}
			if c.ver == 5 && pk.ReasonCode >= 0x80 {
				if err := c.refused(pk.PacketID, pk.ReasonCode, pk.Properties.ReasonString); err != nil {
					return err
				}
				continue
			}
			id := pk.PacketID
			relC := c.relC
			// PUBREL only once "PUBREC received" is on disk: after a crash we
			// then resend PUBREL, never a PUBLISH the broker has completed.
			// The callback runs on the outbox committer: it hands the PUBREL
			// to the releaser and never touches the network itself.
			b.o.Outbox.MarkReleased(m.Seq, func(err error) {
				if err != nil {
					b.log.Error("outbox cannot record PUBREC; closing the link", "error", err)
					c.nc.Close()
					return
				}
				select {
				case relC <- id:
				default:
					// Cannot happen (one PUBREL per message in the window);
					// the PUBREL goes out on the next session instead.
					c.nc.Close()
				}
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
			if pk.PacketID != c.subID {
				b.log.Debug("SUBACK for a packet identifier we did not subscribe with", "id", pk.PacketID)
				continue
			}
			c.checkSuback(pk)
			select {
			case <-c.subacked:
			default:
				close(c.subacked)
			}
		case packets.Pingresp:
		case packets.Disconnect:
			return fmt.Errorf("the server ended the session with DISCONNECT: %s", reasonText(pk.ReasonCode, pk.Properties.ReasonString))
		default:
			b.log.Debug("ignored packet from upstream", "type", packetName(pk.FixedHeader.Type))
		}
	}
}

// checkSuback warns about refused subscriptions and about a QoS granted
// below what the rule asked: messages coming down then have at most that
// QoS (a QoS 2 rule is not exactly-once any more).
func (c *conn) checkSuback(pk packets.Packet) {
	var in []Rule
	for _, r := range c.b.o.Rules {
		if r.Direction&In != 0 {
			in = append(in, r)
		}
	}
	for i, rc := range pk.ReasonCodes {
		filter := ""
		var want byte
		if i < len(in) {
			filter, want = in[i].remoteFilter(), in[i].QoS
		}
		switch {
		case rc >= 0x80:
			c.b.log.Warn("the upstream broker refused a subscription of an \"in\" rule (check its ACL for this client)", "filter", filter, "code", fmt.Sprintf("0x%02x", rc))
		case rc < want:
			c.b.log.Warn("the upstream broker granted a lower QoS than the \"in\" rule asks: messages coming down arrive at most at the granted QoS (QoS 2 asked, 1 granted: no exactly-once from the broker)", "filter", filter, "asked", want, "granted", rc)
		}
	}
}

// qos2Downgrade handles a PUBACK to a QoS 2 PUBLISH: the broker does not do
// QoS 2 (RabbitMQ treats it as QoS 1). The message counts as delivered, at
// least once. From now on QoS 2 messages go at QoS 1, and the log says
// once what that means.
func (c *conn) qos2Downgrade() {
	if c.b.qos2Downgraded.CompareAndSwap(false, true) {
		c.b.log.Warn("the upstream broker answered a QoS 2 PUBLISH with PUBACK: it does not do exactly-once (QoS 2) delivery, so QoS 2 rules are delivered at least once from now on and may duplicate after a link cut; use a broker with QoS 2, or accept and deduplicate by seq upstream")
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
