package ha

import (
	"encoding/json"
	"strings"

	"github.com/edgegw/edgegw/devices"
)

// Message is one discovery config message.
type Message struct {
	Topic   string
	Payload []byte
}

// haUnit maps a payload unit to the one Home Assistant expects for the
// device class (it refuses "%RH" for humidity).
var haUnit = map[string]string{"%RH": "%"}

type deviceInfo struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model"`
	SWVersion    string   `json:"sw_version,omitempty"`
	ViaDevice    string   `json:"via_device,omitempty"`
}

type origin struct {
	Name      string `json:"name"`
	SWVersion string `json:"sw_version,omitempty"`
}

type availability struct {
	Topic string `json:"topic"`
}

// Messages are the config messages of this configuration, in a fixed order.
func (a *Announcer) Messages() []Message {
	o := a.o
	node := ID(o.GatewayID)
	gwID := "edgegw_" + node
	org := origin{Name: "edgegw", SWVersion: o.Version}
	var out []Message
	add := func(component, object string, cfg map[string]any) {
		b, _ := json.Marshal(cfg)
		out = append(out, Message{Topic: o.Prefix + "/" + component + "/" + node + "/" + object + "/config", Payload: b})
	}
	gwDev := deviceInfo{Identifiers: []string{gwID}, Name: "edgegw " + o.GatewayID, Manufacturer: "edgegw", Model: "edgegw gateway", SWVersion: o.Version}
	if o.Availability != "" {
		// The gateway's own entity: its connection to the broker.
		add("binary_sensor", "gateway", map[string]any{
			"name": "Connection", "unique_id": gwID + "_connection",
			"state_topic": o.Availability, "payload_on": "online", "payload_off": "offline",
			"device_class": "connectivity", "entity_category": "diagnostic",
			"device": gwDev, "origin": org,
		})
	}
	for _, d := range o.Devices {
		if d.StateTopic == "" {
			continue
		}
		did := gwID + "_" + ID(d.Name)
		dev := deviceInfo{Identifiers: []string{did}, Name: d.Name, Manufacturer: "edgegw", Model: d.Type, SWVersion: o.Version, ViaDevice: gwID}
		avail := []availability{}
		if o.Availability != "" {
			avail = append(avail, availability{Topic: o.Availability})
		}
		if d.Availability != "" {
			avail = append(avail, availability{Topic: d.Availability})
		}
		common := func(cfg map[string]any) map[string]any {
			cfg["device"] = dev
			cfg["origin"] = org
			if len(avail) > 0 {
				cfg["availability"] = avail
				cfg["availability_mode"] = "all"
			}
			return cfg
		}
		obj := ID(d.Name)
		if d.Desc.Identity {
			// Tag scanners take no availability or unique id (tag.mqtt).
			add("tag", obj, map[string]any{
				"topic": d.StateTopic, "value_template": "{{ value_json.uid }}",
				"device": dev,
			})
		}
		switch {
		case d.Desc.Output && d.CommandTopic != "":
			add("switch", obj, common(map[string]any{
				"name": nil, "unique_id": did + "_state",
				"state_topic": d.StateTopic, "value_template": "{{ value_json.values.state }}",
				"state_on": "True", "state_off": "False",
				"command_topic": d.CommandTopic, "payload_on": "on", "payload_off": "off",
			}))
		case d.Desc.Input:
			add("binary_sensor", obj, common(map[string]any{
				"name": nil, "unique_id": did + "_state",
				"state_topic": d.StateTopic, "value_template": "{{ value_json.values.state }}",
				"payload_on": "True", "payload_off": "False",
			}))
		}
		for _, v := range d.Desc.Values {
			if v.Class == "" && v.State == "" {
				// Not a measurement (an id, an edge, a cause): such fields
				// come in some readings only, and a sensor whose template
				// finds nothing would show an empty state.
				continue
			}
			cfg := common(map[string]any{
				"name": strings.ReplaceAll(v.Name, "_", " "), "unique_id": did + "_" + ID(v.Name),
				"state_topic": d.StateTopic, "value_template": "{{ value_json.values." + v.Name + " }}",
			})
			if u := v.Unit; u != "" {
				if m, ok := haUnit[u]; ok {
					u = m
				}
				cfg["unit_of_measurement"] = u
			}
			if v.Class != "" {
				cfg["device_class"] = v.Class
			}
			if v.State != "" && (v.Type == devices.Float || v.Type == devices.Int) {
				cfg["state_class"] = v.State
			}
			add("sensor", obj+"_"+ID(v.Name), cfg)
		}
	}
	return out
}
