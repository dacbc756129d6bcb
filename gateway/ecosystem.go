package gateway

import (
	"context"
	"log/slog"
	"sync"

	"github.com/edgegw/edgegw/bridge"
	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/gateway/availability"
)

// ecosystem holds the parts that speak other software's languages:
// availability (and, when configured, Home Assistant discovery and the
// Sparkplug B edge node). Each has a start and a stop; the bridge's Will
// and OnConnect hooks are composed here.
type ecosystem struct {
	log   *slog.Logger
	avail *availability.Announcer
}

// newEcosystem makes the configured parts; none does I/O yet.
func (g *Gateway) newEcosystem(bk localBroker) *ecosystem {
	e := &ecosystem{log: g.log}
	if a := g.cfg.Availability; a.Enabled {
		e.avail = availability.New(availability.Options{
			Topic: a.Topic, LocalTopic: a.LocalTopic,
			Publish: func(topic string, payload []byte) error {
				return bk.Publish(broker.Message{Topic: topic, Payload: payload, QoS: 1, Retain: true})
			},
			Logger: g.log.With("component", "availability"),
		})
	}
	return e
}

// ecosystemRules are the bridge rules the parts need, added after the
// user's (the user's rules win when both match).
func (g *Gateway) ecosystemRules() []bridge.Rule {
	var rules []bridge.Rule
	if a := g.cfg.Availability; a.Enabled && g.cfg.Upstream != nil {
		rules = append(rules, availability.New(availability.Options{Topic: a.Topic, LocalTopic: a.LocalTopic}).Rule())
	}
	return rules
}

// will is the bridge's Will hook, nil when no part wants one.
func (e *ecosystem) will() func() *bridge.Will {
	if e.avail != nil {
		return e.avail.Will
	}
	return nil
}

// onConnect is the bridge's OnConnect hook, nil when no part wants one.
func (e *ecosystem) onConnect() func(pub func(topic string, payload []byte, qos byte, retain bool) error) {
	if e.avail == nil {
		return nil
	}
	return func(pub func(string, []byte, byte, bool) error) {
		if e.avail != nil {
			e.avail.OnConnect(pub)
		}
	}
}

// deviceNotify is what a device's runner calls when it goes online or
// offline (nil when availability is off).
func (e *ecosystem) deviceNotify(name string) func(up bool) {
	if e.avail == nil {
		return nil
	}
	return func(up bool) { e.avail.Device(name, up) }
}

// start starts the parts once the local broker runs. When ctx ends (the
// gateway begins to stop) the gateway is published offline locally at
// once, while local clients are still connected to hear it; stop waits for
// that and ends the parts.
func (e *ecosystem) start(ctx context.Context) (stop func(), err error) {
	if e.avail != nil {
		if err := e.avail.Start(); err != nil {
			return nil, err
		}
	}
	var once sync.Once
	offline := func() {
		once.Do(func() {
			if e.avail != nil {
				e.avail.Stop()
			}
		})
	}
	cancel := context.AfterFunc(ctx, offline)
	return func() {
		cancel()
		offline() // waits for a run already under way (sync.Once)
	}, nil
}
