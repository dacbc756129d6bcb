package config

import (
	"fmt"
	"strings"
)

// Availability is the [availability] table: the gateway's and each device's
// online/offline state, retained, on the local broker and upstream.
type Availability struct {
	// Enabled turns availability on (Home Assistant discovery turns it on
	// too: its entities need it).
	Enabled bool `toml:"enabled"`
	// Topic is the gateway's state topic upstream; each device's is
	// Topic + "/" + name. Default: the first out rule's remote_prefix +
	// "status" (e.g. "sites/s1/gw-01/status").
	Topic string `toml:"topic"`
	// LocalTopic is the gateway's state topic on the local broker; each
	// device's is LocalTopic + "/" + name. Default "edgegw/<id>/status".
	LocalTopic string `toml:"local_topic"`
}

// HomeAssistant is the [homeassistant] table: MQTT discovery.
type HomeAssistant struct {
	Enabled bool `toml:"enabled"`
	// DiscoveryPrefix is Home Assistant's discovery prefix (default
	// "homeassistant"); its birth message is DiscoveryPrefix + "/status".
	DiscoveryPrefix string `toml:"discovery_prefix"`
	// Upstream announces to a Home Assistant that uses the upstream broker:
	// config messages go up (and topics in them are the upstream names),
	// and its birth message comes down.
	Upstream bool `toml:"upstream"`
}

// Sparkplug is the [sparkplug] table: a Sparkplug B edge node upstream.
type Sparkplug struct {
	Enabled    bool   `toml:"enabled"`
	GroupID    string `toml:"group_id"`
	EdgeNodeID string `toml:"edge_node_id"` // default: gateway.id
}

// sparkplugID is what Sparkplug allows in group and edge node ids: no MQTT
// wildcards or separators.
func sparkplugID(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if strings.ContainsAny(s, "/+#") {
		return fmt.Sprintf("%q must not hold '/', '+' or '#' (it is one topic level)", s)
	}
	return ""
}

func (c *Config) validateEcosystem(report func(path, msg string)) {
	a := &c.Availability
	if c.HomeAssistant.Enabled {
		a.Enabled = true
	}
	if a.LocalTopic == "" {
		a.LocalTopic = "edgegw/" + c.Gateway.ID + "/status"
	} else if msg := checkTopic(a.LocalTopic); msg != "" {
		report("availability.local_topic", fmt.Sprintf("%q %s", a.LocalTopic, msg))
	}
	if a.Topic == "" {
		a.Topic = "edgegw/" + c.Gateway.ID + "/status"
		if u := c.Upstream; u != nil {
			for _, t := range u.Topics {
				if t.Direction == "out" || t.Direction == "both" || t.Direction == "" {
					a.Topic = t.RemotePrefix + "status"
					break
				}
			}
		}
	} else if msg := checkTopic(a.Topic); msg != "" {
		report("availability.topic", fmt.Sprintf("%q %s", a.Topic, msg))
	}

	h := &c.HomeAssistant
	if h.DiscoveryPrefix == "" {
		report("homeassistant.discovery_prefix", "must not be empty (Home Assistant's default is \"homeassistant\")")
	} else if msg := checkTopic(h.DiscoveryPrefix); msg != "" {
		report("homeassistant.discovery_prefix", fmt.Sprintf("%q %s", h.DiscoveryPrefix, msg))
	}
	if h.Upstream && c.Upstream == nil {
		report("homeassistant.upstream", "needs an [upstream] broker: Home Assistant would be there")
	}

	s := &c.Sparkplug
	if s.Enabled {
		if c.Upstream == nil {
			report("sparkplug", "needs an [upstream] broker: the Sparkplug host application is there")
		}
		if msg := sparkplugID(s.GroupID); msg != "" {
			report("sparkplug.group_id", msg+", e.g. group_id = \"plant1\"")
		}
		if s.EdgeNodeID == "" {
			s.EdgeNodeID = c.Gateway.ID
		} else if msg := sparkplugID(s.EdgeNodeID); msg != "" {
			report("sparkplug.edge_node_id", msg)
		}
	}
}
