package gateway

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/edgegw/edgegw/bridge"
	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/gateway/availability"
	"github.com/edgegw/edgegw/gateway/ha"
)

// Version is the gateway's version as announced to other software (Home
// Assistant's sw_version); the CLI sets it.
var Version = "dev"

// ecosystem holds the parts that speak other software's languages:
// availability, Home Assistant discovery and the Sparkplug B edge node.
// Each has a start and a stop; the bridge's Will and OnConnect hooks are
// composed here.
type ecosystem struct {
	log   *slog.Logger
	avail *availability.Announcer
	ha    *ha.Announcer
}

// newEcosystem makes the configured parts; none does I/O yet.
func (g *Gateway) newEcosystem(bk localBroker) *ecosystem {
	cfg := g.cfg
	e := &ecosystem{log: g.log}
	retained := func(topic string, payload []byte) error {
		return bk.Publish(broker.Message{Topic: topic, Payload: payload, QoS: 1, Retain: true})
	}
	if a := cfg.Availability; a.Enabled {
		e.avail = availability.New(availability.Options{
			Topic: a.Topic, LocalTopic: a.LocalTopic, Publish: retained,
			Logger: g.log.With("component", "availability"),
		})
	}
	if h := cfg.HomeAssistant; h.Enabled {
		hlog := g.log.With("component", "homeassistant")
		up := h.Upstream && cfg.Upstream != nil
		o := ha.Options{
			GatewayID: cfg.Gateway.ID, Version: Version, Prefix: h.DiscoveryPrefix,
			Publish: retained,
			Subscribe: func(filter string, fn func([]byte)) (func(), error) {
				return bk.Subscribe(filter, func(m broker.Message) { fn(m.Payload) })
			},
			StateFile: filepath.Join(cfg.Gateway.DataDir, "homeassistant-announced.json"),
			Logger:    hlog,
		}
		if e.avail != nil {
			o.Availability = e.avail.LocalTopic()
			if up {
				o.Availability = e.avail.Topic()
			}
		}
		for _, d := range g.devices {
			hd := ha.Device{Name: d.name, Type: d.typ, StateTopic: d.topic}
			if ds, ok := d.dev.(devices.Describer); ok {
				hd.Desc = ds.Describe()
			}
			if _, ok := d.dev.(devices.Commander); ok {
				hd.CommandTopic = d.topic + "/set"
			}
			if e.avail != nil {
				hd.Availability = e.avail.DeviceTopic(d.name)
			}
			if up {
				remote, ok := bridge.RemoteTopic(g.rules, d.topic, bridge.Out)
				if !ok {
					hlog.Warn("this device's readings do not go upstream (no out rule matches its topic), so Home Assistant there cannot see it; not announced", "device", d.name, "topic", d.topic)
				}
				hd.StateTopic = remote
				if hd.CommandTopic != "" {
					hd.CommandTopic, _ = bridge.RemoteTopic(g.rules, hd.CommandTopic, bridge.In)
				}
				if e.avail != nil {
					hd.Availability = e.avail.RemoteDeviceTopic(d.name)
				}
			}
			o.Devices = append(o.Devices, hd)
		}
		e.ha = ha.New(o)
	}
	return e
}

// ecosystemRules are the bridge rules the parts need, added after the
// user's (the user's rules win when both match).
func (g *Gateway) ecosystemRules() []bridge.Rule {
	cfg := g.cfg
	var rules []bridge.Rule
	if a := cfg.Availability; a.Enabled {
		rules = append(rules, availability.New(availability.Options{Topic: a.Topic, LocalTopic: a.LocalTopic}).Rule())
	}
	if h := cfg.HomeAssistant; h.Enabled && h.Upstream {
		p := h.DiscoveryPrefix + "/"
		rules = append(rules,
			bridge.Rule{Pattern: "+/" + ha.ID(cfg.Gateway.ID) + "/+/config", Direction: bridge.Out, QoS: 1, LocalPrefix: p, RemotePrefix: p},
			bridge.Rule{Pattern: "status", Direction: bridge.In, QoS: 1, LocalPrefix: p, RemotePrefix: p})
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
	if e.ha != nil {
		if err := e.ha.Start(); err != nil {
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
		if e.ha != nil {
			e.ha.Stop()
		}
	}, nil
}
