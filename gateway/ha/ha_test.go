package ha

import (
	"encoding/json"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgegw/edgegw/devices"
)

type fakeBroker struct {
	mu   sync.Mutex
	pubs map[string][]byte
	subs map[string]func([]byte)
	n    int
}

func (f *fakeBroker) publish(topic string, payload []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pubs[topic] = payload
	f.n++
	return nil
}

func (f *fakeBroker) subscribe(filter string, fn func([]byte)) (func(), error) {
	f.subs[filter] = fn
	return func() {}, nil
}

func options(stateFile string, f *fakeBroker, devs []Device) Options {
	return Options{GatewayID: "gw.01", Version: "1.2.3", Prefix: "homeassistant", Availability: "edgegw/gw.01/status",
		Devices: devs, Publish: f.publish, Subscribe: f.subscribe, StateFile: stateFile}
}

var bme = Device{Name: "climate", Type: "bme280", StateTopic: "readings/climate", Availability: "edgegw/gw.01/status/climate",
	Desc: devices.Description{Values: []devices.Value{
		{Name: "temperature", Type: devices.Float, Unit: "°C", Class: "temperature", State: "measurement"},
		{Name: "humidity", Type: devices.Float, Unit: "%RH", Class: "humidity", State: "measurement"},
		{Name: "rom", Type: devices.String},
	}}}

// TestMessagesLocal: the topics and the keys that matter for each kind of
// device, on the local broker. A gateway id with a '.' becomes '_' in topic
// levels and ids (Home Assistant allows [a-zA-Z0-9_-] only).
func TestMessagesLocal(t *testing.T) {
	devs := []Device{
		bme,
		{Name: "door", Type: "rdm6300", StateTopic: "readings/door", Desc: devices.Description{Identity: true}},
		{Name: "pir", Type: "gpio_in", StateTopic: "readings/pir", Desc: devices.Description{Input: true, Values: []devices.Value{{Name: "state", Type: devices.Bool}}}},
		{Name: "strike", Type: "gpio_out", StateTopic: "relays/strike", CommandTopic: "relays/strike/set", Desc: devices.Description{Output: true}},
		{Name: "hidden", Type: "gpio_out", StateTopic: "", Desc: devices.Description{Output: true}},
	}
	a := New(options(filepath.Join(t.TempDir(), "s.json"), &fakeBroker{}, devs))
	got := map[string]map[string]any{}
	var topics []string
	for _, m := range a.Messages() {
		var c map[string]any
		if err := json.Unmarshal(m.Payload, &c); err != nil {
			t.Fatal(err)
		}
		got[m.Topic] = c
		topics = append(topics, m.Topic)
	}
	sort.Strings(topics)
	want := []string{
		"homeassistant/binary_sensor/gw_01/gateway/config",
		"homeassistant/binary_sensor/gw_01/pir/config",
		"homeassistant/sensor/gw_01/climate_humidity/config",
		"homeassistant/sensor/gw_01/climate_temperature/config",
		"homeassistant/switch/gw_01/strike/config",
		"homeassistant/tag/gw_01/door/config",
	}
	if strings.Join(topics, "\n") != strings.Join(want, "\n") {
		t.Fatalf("config topics:\n%s\nwant:\n%s", strings.Join(topics, "\n"), strings.Join(want, "\n"))
	}
	hum := got["homeassistant/sensor/gw_01/climate_humidity/config"]
	if hum["unit_of_measurement"] != "%" || hum["unique_id"] != "edgegw_gw_01_climate_humidity" || hum["value_template"] != "{{ value_json.values.humidity }}" {
		t.Errorf("humidity sensor %v", hum)
	}
	if av := hum["availability"].([]any); len(av) != 2 || hum["availability_mode"] != "all" {
		t.Errorf("humidity availability %v mode %v: want the gateway's and the device's, all", av, hum["availability_mode"])
	}
	tag := got["homeassistant/tag/gw_01/door/config"]
	if _, ok := tag["availability"]; ok || tag["topic"] != "readings/door" || tag["value_template"] != "{{ value_json.uid }}" {
		t.Errorf("tag scanner %v (it takes no availability)", tag)
	}
	sw := got["homeassistant/switch/gw_01/strike/config"]
	if sw["command_topic"] != "relays/strike/set" || sw["payload_on"] != "on" || sw["state_on"] != "True" {
		t.Errorf("switch %v", sw)
	}
	dev := sw["device"].(map[string]any)
	if dev["via_device"] != "edgegw_gw_01" || dev["model"] != "gpio_out" || dev["sw_version"] != "1.2.3" {
		t.Errorf("switch device %v", dev)
	}
}

// TestRemovedDeviceAndBirth: a device announced by an earlier run and gone
// from the configuration gets an empty retained config; the birth message
// brings a new announcement, other payloads do not.
func TestRemovedDeviceAndBirth(t *testing.T) {
	state := filepath.Join(t.TempDir(), "s.json")
	f := &fakeBroker{pubs: map[string][]byte{}, subs: map[string]func([]byte){}}
	door := Device{Name: "door", Type: "rdm6300", StateTopic: "readings/door", Desc: devices.Description{Identity: true}}
	a := New(options(state, f, []Device{bme, door}))
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	a.Stop()
	f.pubs = map[string][]byte{}
	announced := make(chan int, 4)
	o := options(state, f, []Device{bme})
	o.Announced = func(n int) { announced <- n }
	a = New(o)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	if p, ok := f.pubs["homeassistant/tag/gw_01/door/config"]; !ok || len(p) != 0 {
		t.Fatalf("the removed reader's config: %q (published %v), want empty", p, ok)
	}
	if _, ok := f.pubs["homeassistant/sensor/gw_01/climate_temperature/config"]; !ok {
		t.Fatal("the remaining sensor was not announced")
	}
	if n := <-announced; n != 1 {
		t.Fatalf("first announcement numbered %d", n)
	}
	birth := f.subs["homeassistant/status"]
	if birth == nil {
		t.Fatal("no subscription to the birth topic")
	}
	birth([]byte("online"))
	select {
	case n := <-announced:
		if n != 2 {
			t.Fatalf("announcement %d after the birth, want the 2nd", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no announcement within 10s of the birth message")
	}

}
