package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// hooks is the per-connection state of Options.Will and Options.OnConnect.
type hooks struct {
	will *Will // this connection's Last Will, published by us on a clean stop

	hmu    sync.Mutex
	hookID uint16                   // last packet id used by an OnConnect QoS 1 publish
	hookAk map[uint16]chan struct{} // OnConnect QoS 1 publishes awaiting PUBACK
	closed bool                     // the connection ended: pub refuses
}

// setWill asks Options.Will for this connection's Last Will and puts it
// into CONNECT.
func (c *conn) setWill(pk *packets.Packet) {
	if c.b.o.Will == nil {
		return
	}
	w := c.b.o.Will()
	if w == nil {
		return
	}
	c.will = w
	pk.Connect.WillFlag = true
	pk.Connect.WillTopic = w.Topic
	pk.Connect.WillPayload = w.Payload
	pk.Connect.WillQos = min(w.QoS, 2)
	pk.Connect.WillRetain = w.Retain
}

// publishWill publishes the Will ourselves before a clean DISCONNECT, which
// tells the broker to discard it: a clean stop says the same as a crash.
func (c *conn) publishWill() {
	if c.will == nil {
		return
	}
	w := c.will
	c.wmu.Lock()
	c.werr = nil
	c.wmu.Unlock()
	c.dl.limitTo(time.Now().Add(time.Second)) // bounded like the DISCONNECT (deadline.go)
	// QoS 0 on purpose: no PUBACK can be awaited now (the reader has
	// stopped); TCP delivers it before the DISCONNECT that follows.
	_ = c.write(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: w.Retain},
		TopicName:   w.Topic, Payload: w.Payload,
	})
}

// onConnect runs Options.OnConnect before the backlog is sent. A QoS 1
// publish waits for its PUBACK, so its packet identifier is free again
// before the outbox's messages (whose identifiers cover the whole range)
// are sent.
func (c *conn) onConnect(ctx context.Context) error {
	if c.b.o.OnConnect == nil {
		return nil
	}
	// Its QoS 1 publishes take the identifiers of messages never sent yet
	// (as SUBSCRIBE does): a persistent session may still hold any sent,
	// unfinished one, such as a QoS 2 message waiting for PUBREL.
	c.b.mu.Lock()
	base := pid(c.b.maxSent+1) - 1
	c.b.mu.Unlock()
	c.hmu.Lock()
	c.hookAk = map[uint16]chan struct{}{}
	c.hookID = base
	c.hmu.Unlock()
	context.AfterFunc(ctx, func() {
		c.hmu.Lock()
		c.closed = true
		c.hmu.Unlock()
	})
	var pubErr error
	inHook := true
	var mu sync.Mutex
	pub := func(topic string, payload []byte, qos byte, retain bool) error {
		c.hmu.Lock()
		closed := c.closed
		c.hmu.Unlock()
		if closed {
			return errors.New("bridge: the upstream connection has ended")
		}
		mu.Lock()
		during := inHook
		mu.Unlock()
		if qos > 1 || (qos == 1 && !during) {
			return fmt.Errorf("bridge: QoS %d is not allowed here (QoS 0, or QoS 1 inside OnConnect)", qos)
		}
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain}, TopicName: topic, Payload: payload}
		var ack chan struct{}
		if qos == 1 {
			c.hmu.Lock()
			c.hookID++
			if c.hookID == 0 {
				c.hookID = 1
			}
			pk.PacketID = c.hookID
			ack = make(chan struct{})
			c.hookAk[pk.PacketID] = ack
			c.hmu.Unlock()
		}
		if err := c.write(pk); err != nil {
			return err
		}
		c.b.sent.Add(1)
		if ack == nil {
			return nil
		}
		t := time.NewTimer(c.b.o.ConnectTimeout)
		defer t.Stop()
		select {
		case <-ack:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
			err := fmt.Errorf("bridge: no PUBACK within %s for %s", c.b.o.ConnectTimeout, topic)
			mu.Lock()
			pubErr = err
			mu.Unlock()
			return err
		}
	}
	c.b.o.OnConnect(pub)
	mu.Lock()
	inHook = false
	err := pubErr
	mu.Unlock()
	return err
}

// hookAcked takes a PUBACK meant for an OnConnect publish; it reports
// whether it was one.
func (c *conn) hookAcked(pk packets.Packet) bool {
	if pk.FixedHeader.Type != packets.Puback {
		return false
	}
	c.hmu.Lock()
	defer c.hmu.Unlock()
	ch, ok := c.hookAk[pk.PacketID]
	if !ok {
		return false
	}
	delete(c.hookAk, pk.PacketID)
	close(ch)
	return true
}
