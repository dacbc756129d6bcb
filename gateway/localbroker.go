package gateway

import (
	"fmt"
	"net"

	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/internal/tlsx"
)

// brokerOptions turns [broker] into broker options. Anonymous access is
// allowed by default only when every listener is on loopback; a listener
// reachable from the network that lets anyone in is allowed when asked for,
// with a warning at every start.
func (g *Gateway) brokerOptions() (broker.Options, error) {
	b := g.cfg.Broker
	o := broker.Options{Listen: b.Listen, PasswordFile: b.PasswordFile, ACLFile: b.ACLFile, Logger: g.log.With("component", "broker")}
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
