package config

import (
	"fmt"
	"strings"
	"time"
)

// Profile holds what a cloud broker allows a bridging client, from its
// provider's documentation. `[upstream] profile = NAME` sets the defaults
// below (explicit keys win) and check-config names every rule the broker
// cannot carry, with its line and what to write instead.
type Profile struct {
	Name        string
	Description string
	Inflight    int           // default upstream.inflight
	ReplayRate  int           // default upstream.replay_rate (publishes per second per connection)
	MaxPayload  int64         // default upstream.max_payload in bytes
	MaxQoS      int           // highest rule QoS the broker accepts
	KeepaliveLo time.Duration // keepalive range the broker accepts (0: any)
	KeepaliveHi time.Duration
	MaxSlashes  int // most '/' in a remote topic (0: no limit)
	// RemotePrefix, when set, checks the remote topic of out rules.
	RemotePrefix func(prefix string) string
}

// Profiles are the known broker profiles by name.
var Profiles = map[string]Profile{
	"generic": {Name: "generic", Description: "any MQTT broker; edgegw's own defaults"},
	"aws-iot-core": {Name: "aws-iot-core",
		Description: "AWS IoT Core: 100 unacknowledged QoS 1 messages and 100 publishes/s per connection, no QoS 2, 128 KB payloads, at most 7 slashes in a topic, keepalive 30-1200 s",
		Inflight:    100, ReplayRate: 100, MaxPayload: 128 << 10, MaxQoS: 1,
		KeepaliveLo: 30 * time.Second, KeepaliveHi: 1200 * time.Second, MaxSlashes: 7},
	"azure-iot-hub": {Name: "azure-iot-hub",
		Description: "Azure IoT Hub: 16 in flight, no QoS 2 (it closes the connection), 256 KB messages, device-to-cloud topics devices/{device_id}/messages/events/",
		Inflight:    16, MaxPayload: 256 << 10, MaxQoS: 1,
		KeepaliveLo: 0, KeepaliveHi: 1177 * time.Second,
		RemotePrefix: func(p string) string {
			rest, ok := strings.CutPrefix(p, "devices/")
			if !ok {
				return "Azure IoT Hub takes device messages only under devices/{device_id}/messages/events/"
			}
			id, tail, _ := strings.Cut(rest, "/")
			if id == "" || !strings.HasPrefix(tail, "messages/events/") {
				return "Azure IoT Hub takes device messages only under devices/{device_id}/messages/events/"
			}
			return ""
		}},
}

// profileNames lists the profile names for messages.
func profileNames() []string { return []string{"generic", "aws-iot-core", "azure-iot-hub"} }

// applyProfile sets the profile's defaults for keys the file does not set.
func applyProfile(u *Upstream, defined func(key string) bool) {
	p, ok := Profiles[u.Profile]
	if !ok {
		return
	}
	if p.Inflight > 0 && !defined("inflight") {
		u.Inflight = p.Inflight
	}
	if p.ReplayRate > 0 && !defined("replay_rate") {
		u.ReplayRate = p.ReplayRate
	}
	if p.MaxPayload > 0 && !defined("max_payload") {
		u.MaxPayload.Bytes = p.MaxPayload
	}
}

// validateProfile reports what the profile's broker cannot carry.
func (c *Config) validateProfile(report func(path, msg string)) {
	u := c.Upstream
	if u.Profile == "" {
		return
	}
	p, ok := Profiles[u.Profile]
	if !ok {
		oneOf(report, "upstream.profile", u.Profile, profileNames()...)
		return
	}
	if p.MaxQoS > 0 {
		for i, t := range u.Topics {
			if t.QoS > p.MaxQoS {
				report(fmt.Sprintf("upstream.topic[%d].qos", i), fmt.Sprintf("%d is more than %s accepts (no QoS %d: %s); write qos = %d", t.QoS, p.Name, t.QoS, p.Description, p.MaxQoS))
			}
		}
	}
	if ka := u.Keepalive.Duration; u.Keepalive.err == nil && ((p.KeepaliveLo > 0 && ka < p.KeepaliveLo) || (p.KeepaliveHi > 0 && ka > p.KeepaliveHi)) {
		report("upstream.keepalive", fmt.Sprintf("%s is outside what %s accepts (%s to %s); write keepalive = %q", ka, p.Name, p.KeepaliveLo, p.KeepaliveHi, max(p.KeepaliveLo, 30*time.Second).String()))
	}
	for i, t := range u.Topics {
		if t.Direction == "in" {
			continue
		}
		remote := t.RemotePrefix + t.Pattern
		if p.MaxSlashes > 0 {
			// Every level a wildcard stands for holds at least one; # may
			// stand for more, so this is the least the topics will have.
			if n := strings.Count(remote, "/"); n > p.MaxSlashes {
				report(fmt.Sprintf("upstream.topic[%d].remote_prefix", i), fmt.Sprintf("remote topics %q have %d slashes; %s allows at most %d: shorten remote_prefix (e.g. \"%s\") or the local topics", remote, n, p.Name, p.MaxSlashes, shortPrefix(t.RemotePrefix)))
			}
		}
		if p.RemotePrefix != nil {
			if msg := p.RemotePrefix(t.RemotePrefix); msg != "" {
				report(fmt.Sprintf("upstream.topic[%d].remote_prefix", i), fmt.Sprintf("%q will be refused: %s; write remote_prefix = \"devices/%s/messages/events/\"", t.RemotePrefix, msg, c.Gateway.ID))
			}
		}
	}
}

// shortPrefix suggests a remote prefix with fewer levels: its last level.
func shortPrefix(p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	if len(parts) == 0 || parts[0] == "" {
		return ""
	}
	return parts[len(parts)-1] + "/"
}
