package broker

import (
	"log/slog"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegw/edgegw/broker/auth"
	"github.com/edgegw/edgegw/internal/topic"
)

// Protect reserves topics for the gateway itself: no network client may
// publish to them, whatever the ACL file says. Subscribing stays open.
type Protect struct {
	// Readings are the topics the gateway's devices publish to: only the
	// gateway (Publish) may write them, so a local program cannot forge a
	// reading.
	Readings []string
	// Commands are the topic filters whose messages come down from
	// upstream (the local side of "in" rules, command topics of output
	// devices): only the bridge (Deliver) may write them.
	Commands []string
}

// protectHook is the broker's access hook: it refuses writes to protected
// topics by network clients and asks the policy (the password file and
// ACL; nil allows everything) the rest. In-process clients are always
// allowed.
type protectHook struct {
	mqtt.HookBase
	policy *auth.Policy
	p      Protect
	log    *slog.Logger

	forgedReadings atomic.Uint64
	forgedCommands atomic.Uint64
}

func newProtectHook(policy *auth.Policy, p Protect, log *slog.Logger) *protectHook {
	return &protectHook{policy: policy, p: p, log: log}
}

func (h *protectHook) ID() string { return "edgegw-access" }

func (h *protectHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *protectHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if isInline(cl) {
		return true
	}
	if h.policy != nil {
		user, ok := h.policy.Authenticate(connectingClient(cl, pk))
		if !ok {
			return false
		}
		setClientUsername(cl, user)
	}
	if n, ok := clientConn(cl).(interface{ setClientID(string) }); ok {
		n.setClientID(clientID(cl))
	}
	return true
}

func (h *protectHook) OnACLCheck(cl *mqtt.Client, t string, write bool) bool {
	if isInline(cl) {
		return true
	}
	if write {
		if matchAny(h.p.Readings, t) {
			h.forgedReadings.Add(1)
			h.log.Warn("publish refused: the topic is a device's reading topic, reserved for the gateway (set [broker] protect_topics = false to allow)", "client", clientID(cl), "remote", clientRemote(cl), "topic", t)
			return false
		}
		if matchAny(h.p.Commands, t) {
			h.forgedCommands.Add(1)
			h.log.Warn("publish refused: the topic is a command topic, writable only from upstream (set [broker] protect_topics = false to allow)", "client", clientID(cl), "remote", clientRemote(cl), "topic", t)
			return false
		}
	}
	if h.policy == nil {
		return true
	}
	return h.policy.Allowed(clientUsername(cl), clientID(cl), t, write)
}

func matchAny(filters []string, t string) bool {
	for _, f := range filters {
		if topic.Match(f, t) {
			return true
		}
	}
	return false
}
