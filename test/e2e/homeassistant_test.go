package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/edgegw/edgegw/gateway"
	"github.com/edgegw/edgegw/gateway/config"
	"github.com/edgegw/edgegw/internal/syncbuf"
)

// The discovery keys this gateway may send and their types, per component,
// written from Home Assistant's documentation:
//
//	discovery (topic format, device map, origin, availability list):
//	  https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery
//	sensor:        https://www.home-assistant.io/integrations/sensor.mqtt/
//	binary_sensor: https://www.home-assistant.io/integrations/binary_sensor.mqtt/
//	switch:        https://www.home-assistant.io/integrations/switch.mqtt/
//	tag scanner:   https://www.home-assistant.io/integrations/tag.mqtt/
//
// A key the documentation does not list for the component, or a value of
// another type, fails the test; so does a missing required key.
type keyKind int

const (
	kString keyKind = iota
	kTemplate
	kBool
	kDevice
	kOrigin
	kAvailList
	kNullableString // "name": null means "use the device's name"
)

var entityCommon = map[string]keyKind{
	"name": kNullableString, "unique_id": kString, "device": kDevice, "origin": kOrigin,
	"availability": kAvailList, "availability_mode": kString, "entity_category": kString,
	"state_topic": kString, "value_template": kTemplate, "device_class": kString,
}

var discoverySchema = map[string]struct {
	keys     map[string]keyKind
	required []string
}{
	"sensor": {keys: with(entityCommon, map[string]keyKind{"unit_of_measurement": kString, "state_class": kString}),
		required: []string{"state_topic", "unique_id", "device"}},
	"binary_sensor": {keys: with(entityCommon, map[string]keyKind{"payload_on": kString, "payload_off": kString}),
		required: []string{"state_topic", "unique_id", "device"}},
	"switch": {keys: with(entityCommon, map[string]keyKind{"command_topic": kString, "payload_on": kString, "payload_off": kString, "state_on": kString, "state_off": kString}),
		required: []string{"command_topic", "unique_id", "device"}},
	// The tag scanner takes neither unique_id nor availability.
	"tag": {keys: map[string]keyKind{"topic": kString, "value_template": kTemplate, "device": kDevice},
		required: []string{"topic", "device"}},
}

// deviceKeys are the documented keys of the "device" map we use.
var deviceKeys = map[string]bool{"identifiers": true, "name": true, "manufacturer": true, "model": true, "sw_version": true, "via_device": true}

// Device classes and state classes of sensor.mqtt / the sensor integration,
// with the units Home Assistant accepts for the classes we use.
var sensorClassUnits = map[string][]string{
	"temperature": {"°C", "°F", "K"}, "humidity": {"%"}, "atmospheric_pressure": {"hPa", "kPa", "Pa", "mbar", "inHg", "mmHg", "psi", "cbar", "bar"},
	"pm1": {"µg/m³"}, "pm25": {"µg/m³"}, "pm10": {"µg/m³"},
}
var stateClasses = map[string]bool{"measurement": true, "total": true, "total_increasing": true}
var binaryClasses = map[string]bool{"connectivity": true}
var entityCategories = map[string]bool{"diagnostic": true, "config": true}

var discoveryTopic = regexp.MustCompile(`^homeassistant/(sensor|binary_sensor|switch|tag)/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)/config$`)

func with(a, b map[string]keyKind) map[string]keyKind {
	out := map[string]keyKind{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// checkDiscovery checks one config message against the table; it returns
// the decoded config and its component.
func checkDiscovery(t *testing.T, topic string, payload []byte) (string, map[string]any) {
	t.Helper()
	m := discoveryTopic.FindStringSubmatch(topic)
	if m == nil {
		t.Errorf("%s: not <prefix>/<component>/<node_id>/<object_id>/config with ids of [a-zA-Z0-9_-]", topic)
		return "", nil
	}
	comp := m[1]
	var cfg map[string]any
	if err := json.Unmarshal(payload, &cfg); err != nil {
		t.Errorf("%s: config is not a JSON object: %v", topic, err)
		return comp, nil
	}
	sch := discoverySchema[comp]
	for _, k := range sch.required {
		if _, ok := cfg[k]; !ok {
			t.Errorf("%s: required key %q missing", topic, k)
		}
	}
	for k, v := range cfg {
		kind, ok := sch.keys[k]
		if !ok {
			t.Errorf("%s: key %q is not documented for %s", topic, k, comp)
			continue
		}
		bad := func(want string) { t.Errorf("%s: %s = %v (%T), want %s", topic, k, v, v, want) }
		switch kind {
		case kString:
			if s, ok := v.(string); !ok || s == "" {
				bad("a non-empty string")
			}
		case kNullableString:
			if _, ok := v.(string); !ok && v != nil {
				bad("a string or null")
			}
		case kTemplate:
			if s, ok := v.(string); !ok || !templateRE.MatchString(s) {
				bad("a template {{ value_json.… }}")
			}
		case kBool:
			if _, ok := v.(bool); !ok {
				bad("a boolean")
			}
		case kDevice:
			d, ok := v.(map[string]any)
			if !ok {
				bad("a map")
				continue
			}
			for dk, dv := range d {
				if !deviceKeys[dk] {
					t.Errorf("%s: device key %q is not documented", topic, dk)
				}
				if dk == "identifiers" {
					if l, ok := dv.([]any); !ok || len(l) == 0 {
						t.Errorf("%s: device.identifiers = %v, want a non-empty list", topic, dv)
					}
				} else if s, ok := dv.(string); !ok || s == "" {
					t.Errorf("%s: device.%s = %v, want a non-empty string", topic, dk, dv)
				}
			}
		case kOrigin:
			o, ok := v.(map[string]any)
			if !ok || o["name"] == nil {
				bad("a map with name")
			}
			for ok := range o {
				if ok != "name" && ok != "sw_version" && ok != "support_url" {
					t.Errorf("%s: origin key %q is not documented", topic, ok)
				}
			}
		case kAvailList:
			l, ok := v.([]any)
			if !ok || len(l) == 0 {
				bad("a non-empty list")
				continue
			}
			for _, e := range l {
				em, ok := e.(map[string]any)
				if s, _ := em["topic"].(string); !ok || s == "" {
					t.Errorf("%s: availability entry %v has no topic", topic, e)
				}
			}
		}
	}
	if mode, ok := cfg["availability_mode"]; ok && mode != "all" && mode != "any" && mode != "latest" {
		t.Errorf("%s: availability_mode %v is not all, any or latest", topic, mode)
	}
	if c, ok := cfg["entity_category"].(string); ok && !entityCategories[c] {
		t.Errorf("%s: entity_category %q", topic, c)
	}
	switch comp {
	case "sensor":
		if dc, ok := cfg["device_class"].(string); ok {
			units, known := sensorClassUnits[dc]
			if !known {
				t.Errorf("%s: device_class %q is not one we checked against the documentation", topic, dc)
			} else if u, _ := cfg["unit_of_measurement"].(string); !contains(units, u) {
				t.Errorf("%s: unit %q is not one Home Assistant accepts for %s (%v)", topic, u, dc, units)
			}
		}
		if sc, ok := cfg["state_class"].(string); ok && !stateClasses[sc] {
			t.Errorf("%s: state_class %q", topic, sc)
		}
	case "binary_sensor":
		if dc, ok := cfg["device_class"].(string); ok && !binaryClasses[dc] {
			t.Errorf("%s: device_class %q", topic, dc)
		}
	}
	return comp, cfg
}

func contains(l []string, s string) bool {
	for _, e := range l {
		if e == s {
			return true
		}
	}
	return false
}

// templateRE is the simple template form the gateway uses.
var templateRE = regexp.MustCompile(`^\{\{ value_json((?:\.[a-z0-9_]+)+) \}\}$`)

// render evaluates "{{ value_json.a.b }}" on a JSON payload as Home
// Assistant's Jinja would print it; ok is false when the path is missing.
func render(tmpl string, payload []byte) (string, bool) {
	m := templateRE.FindStringSubmatch(tmpl)
	if m == nil {
		return "", false
	}
	var v any
	if json.Unmarshal(payload, &v) != nil {
		return "", false
	}
	for _, k := range strings.Split(m[1][1:], ".") {
		o, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = o[k]; !ok {
			return "", false
		}
	}
	switch x := v.(type) {
	case bool:
		if x {
			return "True", true
		}
		return "False", true
	case nil:
		return "", false
	case string:
		return x, true
	}
	return fmt.Sprint(v), true
}

// startGateway runs a gateway in-process until stop is called.
func startGateway(t *testing.T, cfgText string) (gw *gateway.Gateway, logs *syncbuf.Buffer, stop func()) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.toml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	logs = &syncbuf.Buffer{}
	gw, err = gateway.Build(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("build:\n%v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	gw.Ready = func() { close(ready) }
	go func() { done <- gw.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("gateway did not stop within 15s")
		}
		if t.Failed() {
			var keep []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if !strings.Contains(l, "msg=reading") {
					keep = append(keep, l)
				}
			}
			t.Logf("gateway log (without readings):\n%s", tail(strings.Join(keep, "\n"), 80))
		}
	}
	t.Cleanup(stop)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("gateway stopped at start: %v\n%s", err, logs.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("gateway not ready within 15s:\n%s", logs.String())
	}
	return gw, logs, stop
}

func haConfig(t *testing.T, f certsFiles, dataDir, upstreamAddr string, withRelay bool) string {
	relay := ""
	if withRelay {
		relay = `
[[device]]
name = "relay"
type = "gpio_out"
topic = "relays/relay"
pin = "E2E_HA_OUT"
initial = "off"
`
	}
	return gwConfig(t, f, dataDir, "127.0.0.1:0", upstreamAddr, `backoff_max = "200ms"`, topicRule("readings/#", "out", 1)+topicRule("relays/+/set", "in", 1)+topicRule("relays/#", "out", 1)+fmt.Sprintf(`[homeassistant]
enabled = true
upstream = true
[[device]]
name = "climate"
type = "sim"
kind = "sensor"
interval = "200ms"
[[device]]
name = "badge"
type = "sim"
kind = "rfid"
interval = "200ms"
[[device]]
name = "contact"
type = "gpio_in"
pin = "E2E_HA_IN"
interval = "500ms"
%s`, relay))
}

// TestHomeAssistantDiscovery is acceptance point 2 of issue 14 with Home
// Assistant on the upstream Mosquitto (mutual TLS): every config message
// under homeassistant/ is checked against the documented keys and types of
// its component; every state topic carries payloads its value_template
// reads (and binary sensors and switches map to their on/off payloads);
// the switch's command topic drives the GPIO output; Home Assistant's birth
// message brings every config again; a device removed from the
// configuration gets an empty retained config at the next start, and the
// others keep their unique ids.
func TestHomeAssistantDiscovery(t *testing.T) {
	in := &gpiotest.Pin{N: "E2E_HA_IN", Num: 4343, EdgesChan: make(chan pgpio.Level)}
	out := &gpiotest.Pin{N: "E2E_HA_OUT", Num: 4344, EdgesChan: make(chan pgpio.Level)}
	for _, p := range []*gpiotest.Pin{in, out} {
		if err := gpioreg.Register(p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gpioreg.Unregister(p.N) })
	}
	f := pki(t)
	up := upstream(t, f)
	disc := subscribe(t, f, up.Addr(), "homeassistant/#", 1)
	states := subscribe(t, f, up.Addr(), "sites/s1/gw-01/#", 1)
	dataDir := t.TempDir()
	_, _, stop := startGateway(t, haConfig(t, f, dataDir, up.Addr(), true))

	want := []string{
		"binary_sensor/gw-01/gateway", "sensor/gw-01/climate_temperature", "sensor/gw-01/climate_humidity",
		"tag/gw-01/badge", "binary_sensor/gw-01/contact", "switch/gw-01/relay",
	}
	configs := func(ms []paho.Message) map[string][]byte {
		out := map[string][]byte{}
		for _, m := range ms {
			out[m.Topic()] = m.Payload()
		}
		return out
	}
	ms := disc.waitFor(t, 20*time.Second, "the discovery configs", func(ms []paho.Message) bool {
		c := configs(ms)
		for _, w := range want {
			if _, ok := c["homeassistant/"+w+"/config"]; !ok {
				return false
			}
		}
		return true
	})
	// Give the last configs of the first announcement a moment: wait until
	// the sensor entities of every described value are there too.
	cfgs := configs(ms)
	ids := map[string]string{}
	gatewayIDs := map[string]bool{}
	type entity struct {
		comp, topic string
		cfg         map[string]any
	}
	var entities []entity
	topics := make([]string, 0, len(cfgs))
	for topic := range cfgs {
		topics = append(topics, topic)
	}
	sort.Strings(topics)
	for _, topic := range topics {
		comp, cfg := checkDiscovery(t, topic, cfgs[topic])
		if cfg == nil {
			continue
		}
		if u, ok := cfg["unique_id"].(string); ok {
			if other, dup := ids[u]; dup {
				t.Errorf("unique_id %q used by %s and %s", u, other, topic)
			}
			ids[u] = topic
		}
		dev, _ := cfg["device"].(map[string]any)
		if dev["via_device"] == nil {
			for _, id := range dev["identifiers"].([]any) {
				gatewayIDs[id.(string)] = true
			}
		}
		entities = append(entities, entity{comp, topic, cfg})
	}
	t.Logf("discovery config %s:\n%s", "homeassistant/sensor/gw-01/climate_temperature/config", cfgs["homeassistant/sensor/gw-01/climate_temperature/config"])
	for _, e := range entities {
		dev := e.cfg["device"].(map[string]any)
		if via, ok := dev["via_device"].(string); ok && !gatewayIDs[via] {
			t.Errorf("%s: via_device %q is not the identifier of an announced gateway device %v", e.topic, via, gatewayIDs)
		}
	}

	// An edge on the input, so its binary sensor sees both states.
	in.Out(pgpio.High)
	select {
	case in.EdgesChan <- pgpio.High:
	case <-time.After(10 * time.Second):
		t.Fatal("the gpio_in driver did not wait for an edge within 10s")
	}

	// Every state topic carries payloads the value_template reads, and
	// every availability topic says "online".
	readable := func(e entity) (topic string, check func(p []byte) bool) {
		topic, _ = e.cfg["state_topic"].(string)
		if e.comp == "tag" {
			topic, _ = e.cfg["topic"].(string)
		}
		tmpl, hasTmpl := e.cfg["value_template"].(string)
		return topic, func(p []byte) bool {
			v := string(p)
			if hasTmpl {
				var ok bool
				if v, ok = render(tmpl, p); !ok {
					return false
				}
			}
			switch e.comp {
			case "binary_sensor":
				return v == e.cfg["payload_on"] || v == e.cfg["payload_off"]
			case "switch":
				return v == e.cfg["state_on"] || v == e.cfg["state_off"]
			}
			return v != ""
		}
	}
	for _, e := range entities {
		topic, check := readable(e)
		states.waitFor(t, 20*time.Second, fmt.Sprintf("a payload on %s that %s's template reads", topic, e.topic), func(ms []paho.Message) bool {
			for _, m := range ms {
				if m.Topic() == topic && check(m.Payload()) {
					return true
				}
			}
			return false
		})
		if av, ok := e.cfg["availability"].([]any); ok {
			for _, a := range av {
				at := a.(map[string]any)["topic"].(string)
				states.waitPayload(t, 20*time.Second, 0, at, "online")
			}
		}
	}

	// The switch drives the output.
	sw := cfgs["homeassistant/switch/gw-01/relay/config"]
	var swc map[string]any
	_ = json.Unmarshal(sw, &swc)
	pub := newPublisher(t, f, up.Addr())
	if tok := pub.Publish(swc["command_topic"].(string), 1, false, swc["payload_on"].(string)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish command: %v", tok.Error())
	}
	states.waitFor(t, 20*time.Second, "the switch state on", func(ms []paho.Message) bool {
		for _, m := range ms {
			if v, ok := render(swc["value_template"].(string), m.Payload()); ok && m.Topic() == swc["state_topic"] && v == swc["state_on"] {
				return true
			}
		}
		return false
	})
	if out.Read() != pgpio.High {
		t.Error("the switch's command did not drive the pin high")
	}

	// Home Assistant's birth message: every config comes again.
	before := len(disc.snapshot())
	if tok := pub.Publish("homeassistant/status", 1, false, "online"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish birth: %v", tok.Error())
	}
	disc.waitFor(t, 20*time.Second, "every config again after the birth message", func(ms []paho.Message) bool {
		again := map[string]bool{}
		for _, m := range ms[before:] {
			if m.Topic() != "homeassistant/status" {
				again[m.Topic()] = true
			}
		}
		for _, topic := range topics {
			if !again[topic] {
				return false
			}
		}
		return true
	})

	// The relay leaves the configuration: the next start removes it.
	stop()
	before = len(disc.snapshot())
	startGateway(t, haConfig(t, f, dataDir, up.Addr(), false))
	ms = disc.waitFor(t, 20*time.Second, "an empty retained config for the removed relay", func(ms []paho.Message) bool {
		for _, m := range ms[before:] {
			if m.Topic() == "homeassistant/switch/gw-01/relay/config" && len(m.Payload()) == 0 {
				return true
			}
		}
		return false
	})
	disc.waitFor(t, 20*time.Second, "the climate sensor announced again", func(ms []paho.Message) bool {
		for _, m := range ms[before:] {
			if m.Topic() == "homeassistant/sensor/gw-01/climate_temperature/config" {
				var c map[string]any
				_ = json.Unmarshal(m.Payload(), &c)
				if c["unique_id"] != "edgegw_gw-01_climate_temperature" {
					t.Errorf("unique id after restart %v", c["unique_id"])
				}
				return true
			}
		}
		return false
	})
	_ = ms
}

// TestHomeAssistantLocal: with Home Assistant on the board's own broker
// (no [upstream] at all), a client of the embedded broker gets the retained
// configs, checked against the same table, with local topics; the state
// topic carries what the template reads; the birth message announces again.
func TestHomeAssistantLocal(t *testing.T) {
	out := &gpiotest.Pin{N: "E2E_HA_LOCAL_OUT", Num: 4346, EdgesChan: make(chan pgpio.Level)}
	if err := gpioreg.Register(out); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gpioreg.Unregister(out.N) })
	cfg := fmt.Sprintf(`
[gateway]
id = "gw-01"
data_dir = %q
http_listen = ""
[broker]
listen = "127.0.0.1:0"
[homeassistant]
enabled = true
[[device]]
name = "climate"
type = "sim"
kind = "sensor"
interval = "100ms"
[[device]]
name = "relay"
type = "gpio_out"
topic = "relays/relay"
pin = "E2E_HA_LOCAL_OUT"
initial = "off"
`, t.TempDir())
	gw, _ := runGateway(t, cfg)
	r := &received{ch: make(chan struct{}, 1)}
	c := localClient(gw.BrokerAddr(), "ha-local", true, nil)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.SubscribeMultiple(map[string]byte{"homeassistant/#": 1, "readings/#": 0}, func(_ paho.Client, m paho.Message) { r.add(m) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local subscribe: %v", tok.Error())
	}
	const temp = "homeassistant/sensor/gw-01/climate_temperature/config"
	ms := r.waitFor(t, 10*time.Second, "the retained temperature config", func(ms []paho.Message) bool {
		for _, m := range ms {
			if m.Topic() == temp {
				return true
			}
		}
		return false
	})
	var cfgMsg map[string]any
	for _, m := range ms {
		if m.Topic() == temp {
			_, cfgMsg = checkDiscovery(t, m.Topic(), m.Payload())
		}
	}
	if cfgMsg["state_topic"] != "readings/climate" {
		t.Fatalf("state_topic %v, want the local readings/climate", cfgMsg["state_topic"])
	}
	av := cfgMsg["availability"].([]any)
	if av[0].(map[string]any)["topic"] != "edgegw/gw-01/status" {
		t.Errorf("availability %v, want the local gateway topic first", av)
	}
	r.waitFor(t, 10*time.Second, "a reading the template reads", func(ms []paho.Message) bool {
		for _, m := range ms {
			if v, ok := render(cfgMsg["value_template"].(string), m.Payload()); ok && m.Topic() == "readings/climate" && v != "" {
				return true
			}
		}
		return false
	})
	// The switch works from the local broker, protect_topics (the default)
	// notwithstanding.
	const sw = "homeassistant/switch/gw-01/relay/config"
	var swc map[string]any
	for _, m := range r.waitFor(t, 10*time.Second, "the switch config", func(ms []paho.Message) bool {
		for _, m := range ms {
			if m.Topic() == sw {
				return true
			}
		}
		return false
	}) {
		if m.Topic() == sw {
			_, swc = checkDiscovery(t, m.Topic(), m.Payload())
		}
	}
	if tok := c.Publish(swc["command_topic"].(string), 1, false, swc["payload_on"].(string)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("switch command: %v", tok.Error())
	}
	waitUntil(t, 10*time.Second, "the local switch command to drive the pin high", func() bool { return out.Read() == pgpio.High })

	before := len(r.snapshot())
	if tok := c.Publish("homeassistant/status", 1, false, "online"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("birth: %v", tok.Error())
	}
	r.waitFor(t, 10*time.Second, "the config again after the birth", func(ms []paho.Message) bool {
		for _, m := range ms[before:] {
			if m.Topic() == temp {
				return true
			}
		}
		return false
	})
}
