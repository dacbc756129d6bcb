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
	"github.com/edgegw/edgegw/gateway/sparkplug"
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
	sp    *sparkplug.Node
	bk    localBroker
	topic map[string]string // device name -> local readings topic
}

// newEcosystem makes the configured parts; none does I/O yet.
func (g *Gateway) newEcosystem(bk localBroker) *ecosystem {
	cfg := g.cfg
	e := &ecosystem{log: g.log, bk: bk, topic: map[string]string{}}
	for _, d := range g.devices {
		e.topic[d.name] = d.topic
	}
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
		if !up && cfg.Broker.Protected() {
			for _, d := range g.devices {
				if _, ok := d.dev.(devices.Commander); ok {
					hlog.Info("Home Assistant on the local broker drives outputs: their command topics (<topic>/set) are writable by local clients; restrict who may with [broker] acl_file", "device", d.name, "topic", d.topic+"/set")
				}
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
	if s := cfg.Sparkplug; s.Enabled && cfg.Upstream != nil {
		o := sparkplug.Options{
			GroupID: s.GroupID, EdgeNodeID: s.EdgeNodeID, Version: Version,
			StateFile:   filepath.Join(cfg.Gateway.DataDir, "sparkplug-bdseq"),
			PendingFile: filepath.Join(cfg.Gateway.DataDir, "sparkplug-pending.jsonl"),
			Logger:      g.log.With("component", "sparkplug"),
		}
		for _, d := range g.devices {
			sd := sparkplug.Device{Name: d.name, Type: d.typ}
			if ds, ok := d.dev.(devices.Describer); ok {
				sd.Desc = ds.Describe()
			}
			if _, ok := d.dev.(devices.Commander); ok {
				set := d.topic + "/set"
				sd.Command = func(p []byte) error { return bk.Publish(broker.Message{Topic: set, Payload: p, QoS: 1}) }
			}
			o.Devices = append(o.Devices, sd)
		}
		e.sp = sparkplug.New(o)
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
	if s := cfg.Sparkplug; s.Enabled {
		n := sparkplug.New(sparkplug.Options{GroupID: s.GroupID, EdgeNodeID: s.EdgeNodeID})
		ncmd, dcmd := n.CommandTopics()
		rules = append(rules,
			bridge.Rule{Pattern: ncmd, Direction: bridge.In, QoS: 1},
			bridge.Rule{Pattern: dcmd, Direction: bridge.In, QoS: 1})
	}
	if h := cfg.HomeAssistant; h.Enabled && h.Upstream {
		p := h.DiscoveryPrefix + "/"
		rules = append(rules,
			bridge.Rule{Pattern: "+/" + ha.ID(cfg.Gateway.ID) + "/+/config", Direction: bridge.Out, QoS: 1, LocalPrefix: p, RemotePrefix: p},
			bridge.Rule{Pattern: "status", Direction: bridge.In, QoS: 1, LocalPrefix: p, RemotePrefix: p})
	}
	return rules
}

// ecosystemTopics are the local topics only the gateway writes: the
// availability states and its Home Assistant configs (protect_topics).
func (g *Gateway) ecosystemTopics() []string {
	cfg := g.cfg
	var out []string
	if a := cfg.Availability; a.Enabled {
		out = append(out, a.LocalTopic, a.LocalTopic+"/+")
	}
	if h := cfg.HomeAssistant; h.Enabled {
		out = append(out, h.DiscoveryPrefix+"/+/"+ha.ID(cfg.Gateway.ID)+"/+/config")
	}
	return out
}

// will is the bridge's Will hook, nil when no part wants one. There is
// one Will per connection: with Sparkplug on, NDEATH wins.
func (e *ecosystem) will() func() *bridge.Will {
	if e.sp != nil {
		return func() *bridge.Will {
			topic, payload := e.sp.Will()
			return &bridge.Will{Topic: topic, Payload: payload, QoS: 1}
		}
	}
	if e.avail != nil {
		return e.avail.Will
	}
	return nil
}

// onConnect is the bridge's OnConnect hook, nil when no part wants one.
func (e *ecosystem) onConnect() func(pub func(topic string, payload []byte, qos byte, retain bool) error) {
	if e.avail == nil && e.sp == nil {
		return nil
	}
	return func(pub func(string, []byte, byte, bool) error) {
		if e.avail != nil {
			e.avail.OnConnect(pub)
		}
		if e.sp != nil {
			e.sp.OnConnect(pub)
		}
	}
}

// deviceNotify is what a device's runner calls when it goes online or
// offline (nil when availability is off).
func (e *ecosystem) deviceNotify(name string) func(up bool) {
	if e.avail == nil && e.sp == nil {
		return nil
	}
	return func(up bool) {
		if e.avail != nil {
			e.avail.Device(name, up)
		}
		if e.sp != nil {
			e.sp.DeviceState(name, up)
		}
	}
}

// start starts the parts once the local broker runs. When ctx ends (the
// gateway begins to stop) the gateway is published offline locally at
// once, while local clients are still connected to hear it; stop waits for
// that and ends the parts.
func (e *ecosystem) start(ctx context.Context) (stop func(), err error) {
	if e.avail != nil {
		if err := e.avail.Start(); err != nil {
			e.log.Warn("the gateway's online state is not published locally", "error", err)
		}
	}
	if e.ha != nil {
		if err := e.ha.Start(); err != nil {
			return nil, err
		}
	}
	var cancels []func()
	if e.sp != nil {
		c, err := e.startSparkplug(ctx)
		if err != nil {
			return nil, err
		}
		cancels = append(cancels, c)
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
		for _, c := range cancels {
			c()
		}
	}, nil
}

// startSparkplug feeds the node the devices' readings and the commands that
// came down. Both are handed to goroutines of their own through bounded
// queues: a reading's subscription callback runs on the local publisher's
// path (for a QoS 1/2 message held for the outbox, the broker's
// acknowledger, shared by every client), a command's on the bridge's
// reader, and the node may wait on the upstream socket or the disk.
func (e *ecosystem) startSparkplug(ctx context.Context) (stop func(), err error) {
	var cancels []func()
	stop = func() {
		for _, c := range cancels {
			c()
		}
	}
	for name, topic := range e.topic {
		c, err := e.bk.Subscribe(topic, func(m broker.Message) { e.sp.Offer(name, m.Payload) })
		if err != nil {
			stop()
			return nil, err
		}
		cancels = append(cancels, c)
	}
	cmds := make(chan broker.Message, 16)
	ncmd, dcmd := e.sp.CommandTopics()
	for _, f := range []string{ncmd, dcmd} {
		c, err := e.bk.Subscribe(f, func(m broker.Message) {
			select {
			case cmds <- m:
			default:
				e.log.Warn("sparkplug: command dropped: too many waiting", "topic", m.Topic)
			}
		})
		if err != nil {
			stop()
			return nil, err
		}
		cancels = append(cancels, c)
	}
	cctx, cancel := context.WithCancel(ctx)
	// The node's goroutine ends only in stop, after the subscriptions above
	// are cancelled (not when ctx ends, while readings still arrive), so
	// every reading queued is sent or kept for the next birth.
	rctx, rcancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.sp.Run(rctx) }()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-cctx.Done():
				return
			case m := <-cmds:
				e.sp.Command(m.Topic, m.Payload)
			}
		}
	}()
	cancels = append(cancels, func() { cancel(); rcancel(); wg.Wait() }, e.sp.Close)
	return stop, nil
}
