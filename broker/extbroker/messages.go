package extbroker

import (
	"fmt"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/broker"
)

// Publish publishes one of the gateway's own messages and waits, bounded by
// PublishTimeout, for the broker's acknowledgement. The bridge takes it when
// the broker sends it back through an out-rule subscription. While the
// broker is unreachable, or connected but our subscriptions not yet in
// place, nothing is sent: an out-rule message is handed straight to the
// bridge instead (and nil returned), so it is neither lost nor taken twice;
// any other message fails with ErrNotConnected.
func (b *Broker) Publish(m broker.Message) error {
	box := b.icept.Load()
	wanted := box != nil && box.Wants(m.Topic)
	if !b.cli.IsConnectionOpen() || (wanted && !b.ready.Load()) {
		if wanted {
			m.Origin, m.PacketID, m.Dup = "", 0, false
			box.Accept(m, nil)
			b.bypassed.Add(1)
			return nil
		}
		b.publishFails.Add(1)
		return fmt.Errorf("extbroker: publish %q: %w at %s", m.Topic, ErrNotConnected, b.o.Addr)
	}
	return b.publish(m)
}

func (b *Broker) publish(m broker.Message) error {
	tok := b.cli.Publish(m.Topic, m.QoS, m.Retain, m.Payload)
	if !tok.WaitTimeout(b.o.PublishTimeout) {
		b.publishFails.Add(1)
		return fmt.Errorf("extbroker: publish %q: not acknowledged by %s within %s (it may still arrive)", m.Topic, b.o.Addr, b.o.PublishTimeout)
	}
	if err := tok.Error(); err != nil {
		b.publishFails.Add(1)
		return fmt.Errorf("extbroker: publish %q to %s: %w", m.Topic, b.o.Addr, err)
	}
	b.sent.Add(1)
	return nil
}

// Subscribe calls fn for every message on filter until cancel is called. fn
// runs on the client's delivery goroutine, in arrival order: keep it short.
// The subscription is made on the broker now if connected, and again at
// every reconnection.
func (b *Broker) Subscribe(filter string, fn func(broker.Message)) (cancel func(), err error) {
	if !validFilter(filter) {
		return nil, fmt.Errorf("extbroker: subscribe %q: not a valid topic filter", filter)
	}
	b.mu.Lock()
	b.nextSub++
	id := b.nextSub
	b.subs[id] = localSub{filter: filter, fn: fn}
	b.mu.Unlock()
	if b.cli.IsConnectionOpen() {
		tok := b.cli.Subscribe(filter, 2, nil)
		switch {
		case !tok.WaitTimeout(b.o.PublishTimeout):
			b.log.Warn("the local broker did not answer SUBSCRIBE; it is retried at the next connection", "filter", filter)
		case tok.Error() != nil:
			b.log.Warn("subscribing on the local broker failed; it is retried at the next connection", "filter", filter, "error", tok.Error())
		default:
			b.checkGranted(tok)
		}
	}
	return func() { b.unsubscribe(id, filter) }, nil
}

func (b *Broker) unsubscribe(id int, filter string) {
	b.mu.Lock()
	if _, ok := b.subs[id]; !ok {
		b.mu.Unlock()
		return
	}
	delete(b.subs, id)
	still := false
	for _, s := range b.subs {
		still = still || s.filter == filter
	}
	for _, f := range b.o.Filters {
		still = still || f == filter
	}
	closed := b.closed
	b.mu.Unlock()
	if still || closed || !b.cli.IsConnectionOpen() {
		return
	}
	if tok := b.cli.Unsubscribe(filter); tok.WaitTimeout(b.o.PublishTimeout) && tok.Error() == nil {
		b.mu.Lock()
		delete(b.granted, filter)
		b.mu.Unlock()
	}
}

// onMessage handles every message the broker sends, on paho's delivery
// goroutine, one at a time in arrival order.
func (b *Broker) onMessage(_ paho.Client, pm paho.Message) {
	b.received.Add(1)
	m := broker.Message{
		Topic: pm.Topic(), Payload: pm.Payload(), QoS: pm.Qos(), Retain: pm.Retained(),
		// The broker's packet identifier and DUP flag for our session: a
		// QoS 2 message it resends after our crash carries the same pair,
		// which the bridge recognises if it stored the first copy.
		Origin: b.o.ClientID, PacketID: pm.MessageID(), Dup: pm.Duplicate(),
	}
	b.take(m, pm)
	b.dispatch(m)
}

// take hands a message to the bridge, or acknowledges it at once when the
// bridge must not have it.
func (b *Broker) take(m broker.Message, pm paho.Message) {
	box := b.icept.Load()
	switch {
	case box == nil,
		// A retained copy sent because we (re)subscribed is not a new
		// publication; the live one was taken when it was published.
		m.Retain,
		!box.Wants(m.Topic):
		b.ackNow(pm)
		return
	case b.echo.take(m.Topic, m.Payload):
		// It came down from upstream through Deliver: not back up.
		b.echoesDropped.Add(1)
		b.ackNow(pm)
		return
	case m.QoS == 0:
		box.Accept(m, nil)
		return
	}
	slot := b.acks.reserve()
	box.Accept(m, func(err error) {
		if err != nil {
			// Left unacknowledged: the broker sends it again with the
			// next session.
			b.refused.Add(1)
			b.log.Debug("message refused by the bridge; left unacknowledged", "topic", m.Topic, "error", err)
			b.acks.done(slot, nil)
			return
		}
		b.acks.done(slot, pm)
	})
}

// ackNow acknowledges a message the bridge does not take, in its turn.
func (b *Broker) ackNow(pm paho.Message) {
	if pm.Qos() > 0 {
		b.acks.done(b.acks.reserve(), pm)
	}
}

// dispatch calls every local subscription that matches, once each.
func (b *Broker) dispatch(m broker.Message) {
	b.mu.Lock()
	var fns []func(broker.Message)
	for _, s := range b.subs {
		if match(s.filter, m.Topic) {
			fns = append(fns, s.fn)
		}
	}
	b.mu.Unlock()
	for _, fn := range fns {
		fn(m)
	}
}
