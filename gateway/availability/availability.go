// Package availability publishes the gateway's and each device's state,
// "online" or "offline", as retained messages, so a consumer (a dashboard,
// Home Assistant) can tell a quiet sensor from a dead one.
//
// The gateway's own state upstream is the bridge's Last Will ("offline",
// published by the upstream broker when the link dies or the gateway is
// killed) and a retained "online" sent first on every connection. On the
// local broker it is "online" from start to a clean stop. A device's state
// is published on the local broker and goes up through a bridge rule (see
// Rule), in order with everything else, through the outbox.
package availability

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/edgegw/edgegw/bridge"
)

// Payloads of the state topics.
const (
	Online  = "online"
	Offline = "offline"
)

// Options configure an Announcer.
type Options struct {
	// Topic is the gateway's state topic upstream; a device's is
	// Topic + "/" + name.
	Topic string
	// LocalTopic is the gateway's state topic on the local broker; a
	// device's is LocalTopic + "/" + name.
	LocalTopic string
	// Publish publishes on the local broker (QoS 1, retained).
	Publish func(topic string, payload []byte) error
	Logger  *slog.Logger
}

// Announcer publishes availability. Its methods are safe for concurrent use.
type Announcer struct {
	o   Options
	mu  sync.Mutex
	dev map[string]string // last state published per device
}

// New makes an Announcer.
func New(o Options) *Announcer {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Announcer{o: o, dev: map[string]string{}}
}

// DeviceTopic is a device's local state topic.
func (a *Announcer) DeviceTopic(name string) string { return a.o.LocalTopic + "/" + name }

// RemoteDeviceTopic is a device's state topic upstream.
func (a *Announcer) RemoteDeviceTopic(name string) string { return a.o.Topic + "/" + name }

// Topic is the gateway's state topic upstream.
func (a *Announcer) Topic() string { return a.o.Topic }

// LocalTopic is the gateway's state topic on the local broker.
func (a *Announcer) LocalTopic() string { return a.o.LocalTopic }

// Rule is the bridge rule that carries the devices' states up (QoS 1): a
// local LocalTopic/<name> goes up as Topic/<name>.
func (a *Announcer) Rule() bridge.Rule {
	return bridge.Rule{Pattern: "+", Direction: bridge.Out, QoS: 1, LocalPrefix: a.o.LocalTopic + "/", RemotePrefix: a.o.Topic + "/"}
}

// Will is the bridge's Last Will: the gateway offline, retained.
func (a *Announcer) Will() *bridge.Will {
	return &bridge.Will{Topic: a.o.Topic, Payload: []byte(Offline), QoS: 1, Retain: true}
}

// OnConnect publishes the gateway online upstream, before the backlog.
func (a *Announcer) OnConnect(pub func(topic string, payload []byte, qos byte, retain bool) error) {
	if err := pub(a.o.Topic, []byte(Online), 1, true); err != nil {
		a.o.Logger.Warn("could not publish the gateway's online state upstream", "topic", a.o.Topic, "error", err)
	}
}

// Start publishes the gateway online on the local broker.
func (a *Announcer) Start() error {
	if err := a.o.Publish(a.o.LocalTopic, []byte(Online)); err != nil {
		return fmt.Errorf("availability: %s: %w", a.o.LocalTopic, err)
	}
	return nil
}

// Stop publishes the gateway offline on the local broker (a clean stop).
func (a *Announcer) Stop() {
	if err := a.o.Publish(a.o.LocalTopic, []byte(Offline)); err != nil {
		a.o.Logger.Warn("could not publish the gateway's offline state locally", "topic", a.o.LocalTopic, "error", err)
	}
}

// Device publishes a device's state when it changed.
func (a *Announcer) Device(name string, up bool) {
	state := Offline
	if up {
		state = Online
	}
	a.mu.Lock()
	defer a.mu.Unlock() // in order per device: the broker keeps the last
	if a.dev[name] == state {
		return
	}
	a.dev[name] = state
	if err := a.o.Publish(a.DeviceTopic(name), []byte(state)); err != nil {
		a.o.Logger.Warn("could not publish a device's state", "device", name, "state", state, "error", err)
		return
	}
	a.o.Logger.Debug("device state", "device", name, "state", state)
}
