package gateway

import (
	"fmt"
	"net"

	"github.com/edgegw/edgegw/bridge"
	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/broker/extbroker"
	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/gateway/config"
	"github.com/edgegw/edgegw/internal/tlsx"
)

// localBroker is what the gateway uses of its local broker: the embedded
// one, or a client of an external one ([broker] external).
type localBroker interface {
	Publish(m broker.Message) error
	Deliver(m broker.Message) error
	Subscribe(filter string, fn func(broker.Message)) (cancel func(), err error)
	SetInterceptor(i broker.Interceptor)
	Start() error
	Close() error
	Stats() broker.Stats
	Addr(id string) net.Addr
}

var (
	_ localBroker = (*broker.Broker)(nil)
	_ localBroker = (*extbroker.Broker)(nil)
)

// newLocalBroker makes the embedded broker, or the client of the external
// one when [broker] external is set.
func (g *Gateway) newLocalBroker() (localBroker, error) {
	b := g.cfg.Broker
	if b.External == "" {
		o, err := g.brokerOptions()
		if err != nil {
			return nil, err
		}
		bk, err := broker.New(o)
		if err != nil {
			return nil, err
		}
		return bk, nil
	}
	addr, err := config.ExternalAddress(b.External)
	if err != nil {
		return nil, fmt.Errorf("gateway: broker.external: %w", err)
	}
	var password []byte
	if b.ExternalPasswordFile != "" {
		if password, err = tlsx.ReadPassword(b.ExternalPasswordFile); err != nil {
			return nil, fmt.Errorf("gateway: broker.external_password_file: %w", err)
		}
	}
	if b.TLS != nil || b.PasswordFile != "" || b.ACLFile != "" {
		g.log.Warn("[broker] external is set: the embedded broker's tls, password_file and acl_file are not used; configure them on the external broker")
	}
	var filters []string
	for _, r := range g.rules {
		if r.Direction&bridge.Out != 0 {
			filters = append(filters, r.LocalPrefix+r.Pattern)
		}
	}
	var attempt func()
	if h := g.ops.brokerHeart; h != nil {
		attempt = h.Beat // alive while it keeps trying: an absent broker is not a wedged gateway
	}
	bk, err := extbroker.New(extbroker.Options{
		Addr: addr, ClientID: "edgegw-" + g.cfg.Gateway.ID + "-local",
		Username: b.ExternalUsername, Password: password,
		Filters: filters, Attempt: attempt,
		Logger: g.log.With("component", "broker"),
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return bk, nil
}

// brokerOptions turns [broker] into broker options. Anonymous access is
// allowed by default only when every listener is on loopback; a listener
// reachable from the network that lets anyone in is allowed when asked for,
// with a warning at every start.
func (g *Gateway) brokerOptions() (broker.Options, error) {
	b := g.cfg.Broker
	o := broker.Options{
		Listen: b.Listen, PasswordFile: b.PasswordFile, ACLFile: b.ACLFile,
		Limits: broker.Limits{
			MaxPacketSize:  int(b.MaxPacketSize.Bytes),
			MaxConnections: b.MaxConnections,
			ConnectTimeout: b.ConnectTimeout.Duration,
			WriteTimeout:   b.WriteTimeout.Duration,
			ClientQueue:    int(b.ClientQueue.Bytes),
		},
		Logger: g.log.With("component", "broker"),
	}
	if b.Protected() {
		o.Protect = g.protectedTopics()
	}
	loopback := isLoopback(b.Listen)
	if b.TLS != nil {
		loopback = loopback && isLoopback(b.TLS.Listen)
		tc, err := tlsx.ServerConfig(tlsOptions(&b.TLS.TLS), b.TLS.RequireCertificate)
		if err != nil {
			return o, fmt.Errorf("broker.tls: %w", err)
		}
		o.TLSListen, o.TLS = b.TLS.Listen, tc
		o.UseIdentityAsUsername = b.TLS.RequireCertificate
	}
	if b.AllowAnonymous != nil {
		o.AllowAnonymous = *b.AllowAnonymous
	} else {
		o.AllowAnonymous = loopback
	}
	if o.AllowAnonymous && !loopback {
		g.log.Warn("the local broker lets anonymous clients in on a listener reachable from the network; set [broker] allow_anonymous = false and a password_file, or listen on 127.0.0.1")
	}
	return o, nil
}

// isLoopback reports whether a listen address is loopback-only ("" counts:
// no listener).
func isLoopback(hostport string) bool {
	if hostport == "" {
		return true
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// protectedTopics are the topics no local client may publish to while
// [broker] protect_topics is on: each device's reading topic (only the
// gateway writes it), and the command topics: each output device's
// "<topic>/set" and the local side of every "in" rule (only messages from
// upstream write them). A "both" rule is not protected: local clients
// publishing on it is its point.
func (g *Gateway) protectedTopics() broker.Protect {
	var p broker.Protect
	// Home Assistant on the local broker drives outputs through their
	// command topics, so those stay writable (the ACL still applies).
	haLocal := g.cfg.HomeAssistant.Enabled && !g.cfg.HomeAssistant.Upstream
	for _, d := range g.devices {
		p.Readings = append(p.Readings, d.topic)
		if _, ok := d.dev.(devices.Commander); ok && !haLocal {
			p.Commands = append(p.Commands, d.topic+"/set")
		}
	}
	p.Readings = append(p.Readings, g.ecosystemTopics()...)
	for _, r := range g.rules {
		if r.Direction == bridge.In {
			p.Commands = append(p.Commands, r.LocalPrefix+r.Pattern)
		}
	}
	return p
}
