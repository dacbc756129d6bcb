package bridge

import (
	"context"

	"github.com/edgegw/edgegw/bridge/outbox"
)

// Live first (Options.LiveFirst, `[upstream] live_first`): while a backlog
// drains after an outage, messages that arrive meanwhile are sent ahead of
// it, so fresh readings are not minutes late. What it does to order: per
// topic, the live messages keep their order among themselves and the
// backlog keeps its own, but a live message may arrive before older backlog
// messages of the same topic (consumers that care order by the payload's
// seq or ts). Every message is still delivered (QoS 1 at least once, QoS 2
// exactly once): the outbox holds each one and acknowledges out of order.
//
// How: the bridge hands each message durably appended while the link is up
// and a backlog drains to liveC as well; the sender takes from liveC before
// the outbox's read cursor, and skips a message when the other path sent it
// already in this session. With the outbox's memory window a QoS 1 message
// appended while the link is up is durable (and so handed over) once it is
// spilled, after SpillAfter (1 s by default): live messages go ahead of the
// backlog about a second after they arrive.

// liveDepth bounds liveC; a message that does not fit simply comes by the
// backlog path, in log order.
const liveDepth = 4096

// offerLive hands a message just made durable to the sender, if live-first
// applies now.
func (b *Bridge) offerLive(m outbox.Message) {
	if !b.o.LiveFirst || !b.linkUp.Load() || !b.backlogged.Load() {
		return
	}
	select {
	case b.liveC <- m:
	default:
	}
}

// startLive prepares a session: stale live messages of an earlier session
// are dropped from liveC (the outbox resends them in order), and live-first
// applies if a backlog is waiting. It returns the backlog reader for the
// session to run (nil when live-first is off).
func (c *conn) startLive(backlog uint64) func(context.Context) error {
	b := c.b
	if !b.o.LiveFirst {
		return nil
	}
drain:
	for {
		select {
		case <-b.liveC:
		default:
			break drain
		}
	}
	c.liveSent = map[uint64]bool{}
	c.nextC = make(chan outbox.Message)
	c.nextErr = make(chan error, 1)
	b.backlogged.Store(backlog > 0)
	return func(ctx context.Context) error {
		for {
			m, err := b.o.Outbox.Next(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				c.nextErr <- err
				return nil
			}
			select {
			case c.nextC <- m:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// nextMessage returns the next message to send; ok is false for one the
// other path has sent already.
func (c *conn) nextMessage(ctx context.Context) (outbox.Message, bool, error) {
	b := c.b
	if !b.o.LiveFirst {
		m, err := b.o.Outbox.Next(ctx)
		return m, err == nil, err
	}
	var m outbox.Message
	live := false
	select {
	case m = <-b.liveC:
		live = true
	default:
		select {
		case m = <-b.liveC:
			live = true
		case m = <-c.nextC:
		case err := <-c.nextErr:
			return m, false, err
		case <-ctx.Done():
			return m, false, ctx.Err()
		}
	}
	if live {
		if m.Seq <= c.nextMax || c.liveSent[m.Seq] {
			return m, false, nil // the backlog path got there first
		}
		if c.firstLive == 0 {
			c.firstLive = m.Seq
		}
		c.liveSent[m.Seq] = true
		return m, true, nil
	}
	c.nextMax = max(c.nextMax, m.Seq)
	if c.firstLive != 0 && m.Seq >= c.firstLive {
		b.backlogged.Store(false) // caught up: the log order serves again
	}
	if c.liveSent[m.Seq] {
		delete(c.liveSent, m.Seq)
		return m, false, nil
	}
	return m, true, nil
}
