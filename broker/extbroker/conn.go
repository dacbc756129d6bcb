package extbroker

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/internal/backoff"
)

// connectLoop makes the first connection, retrying with a bounded backoff
// until it succeeds or Close; paho reconnects by itself after that. first is
// closed after the first attempt.
func (b *Broker) connectLoop(first chan struct{}) {
	wait := backoff.Doubling{Min: b.o.BackoffMin, Max: b.o.BackoffMax}
	for n := 0; ; n++ {
		tok := b.cli.Connect()
		// An attempt is bounded by ConnectTimeout; wait for it even when
		// stopping, so Close never races a connection coming up.
		tok.WaitTimeout(b.o.ConnectTimeout + time.Second)
		if n == 0 {
			close(first)
		}
		err := tok.Error()
		if err == nil && b.cli.IsConnectionOpen() {
			return
		}
		if err == nil {
			err = fmt.Errorf("no answer within %s", b.o.ConnectTimeout)
		}
		b.connectFails.Add(1)
		b.noteDown("cannot connect to the local broker", err)
		t := time.NewTimer(wait.Next())
		select {
		case <-b.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// noteDown logs the first failure of an episode at Warn and the rest at Debug.
func (b *Broker) noteDown(msg string, err error) {
	b.mu.Lock()
	first := b.downSince.IsZero()
	if first {
		b.downSince = time.Now()
	}
	b.mu.Unlock()
	if first {
		b.log.Warn(msg+"; retrying until it answers (readings for out rules go straight to the bridge meanwhile)", "broker", b.o.Addr, "error", err)
	} else {
		b.log.Debug(msg, "broker", b.o.Addr, "error", err)
	}
}

func (b *Broker) onAttempt(_ *url.URL, tc *tls.Config) *tls.Config {
	if b.o.Attempt != nil {
		b.o.Attempt()
	}
	return tc
}

func (b *Broker) onLost(_ paho.Client, err error) {
	b.connected.Store(false)
	b.ready.Store(false)
	b.mu.Lock()
	clear(b.granted)
	b.mu.Unlock()
	b.noteDown("lost the local broker", err)
}

// onConnect runs after every (re)connection: it subscribes every filter
// again (the session may be new, and re-subscribing an existing one is
// harmless: retained copies it brings are never taken for the bridge).
func (b *Broker) onConnect(c paho.Client) {
	b.connects.Add(1)
	b.connected.Store(true)
	b.mu.Lock()
	down, ever := b.downSince, b.everUp
	b.downSince, b.everUp = time.Time{}, true
	b.mu.Unlock()
	switch {
	case !down.IsZero():
		b.log.Info("connected to the local broker", "broker", b.o.Addr, "client_id", b.o.ClientID, "down_for", time.Since(down).Round(time.Millisecond))
	case !ever:
		b.log.Info("connected to the local broker", "broker", b.o.Addr, "client_id", b.o.ClientID)
	}
	filters := b.filters()
	if len(filters) == 0 {
		b.ready.Store(true)
		return
	}
	want := make(map[string]byte, len(filters))
	for _, f := range filters {
		want[f] = 2
	}
	tok := c.SubscribeMultiple(want, nil)
	if !tok.WaitTimeout(b.o.PublishTimeout) {
		b.log.Warn("the local broker did not answer SUBSCRIBE; it is retried at the next connection", "broker", b.o.Addr)
		return
	}
	if err := tok.Error(); err != nil {
		b.log.Warn("subscribing on the local broker failed", "broker", b.o.Addr, "error", err)
		return
	}
	b.checkGranted(tok)
	// From now on what we publish comes back to us (refused filters are
	// logged above; their messages would not come back either way).
	b.ready.Store(b.cli.IsConnectionOpen())
}

// checkGranted notes the filters the broker granted and logs every one it
// refused (its ACL).
func (b *Broker) checkGranted(tok paho.Token) {
	st, ok := tok.(*paho.SubscribeToken)
	if !ok {
		return
	}
	for f, q := range st.Result() {
		if q > 2 {
			b.log.Error("the local broker refused a subscription; messages on it are not bridged (check its acl_file for this client)", "broker", b.o.Addr, "filter", f, "client_id", b.o.ClientID, "user", b.o.Username)
			continue
		}
		b.mu.Lock()
		b.granted[f] = true
		b.mu.Unlock()
	}
}

// filters are the out-rule filters and the local subscriptions, each once.
func (b *Broker) filters() []string {
	seen := map[string]bool{}
	var out []string
	add := func(f string) {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for _, f := range b.o.Filters {
		add(f)
	}
	b.mu.Lock()
	for _, s := range b.subs {
		add(s.filter)
	}
	b.mu.Unlock()
	return out
}
