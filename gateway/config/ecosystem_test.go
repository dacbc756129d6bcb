package config

import (
	"strings"
	"testing"
)

// TestEcosystemDefaults: availability topics follow the first out rule's
// remote prefix, Home Assistant's prefix is "homeassistant", turning Home
// Assistant on turns availability on, and the Sparkplug edge node id is the
// gateway id unless set.
func TestEcosystemDefaults(t *testing.T) {
	src := withFiles(t, strings.Replace(good, "[buffer]", "[homeassistant]\nenabled = true\n[sparkplug]\nenabled = true\ngroup_id = \"plant1\"\n[buffer]", 1))
	c, err := Parse("gw.toml", src)
	if err != nil {
		t.Fatal(err)
	}
	a := c.Availability
	if !a.Enabled || a.Topic != "sites/s1/gw-01/status" || a.LocalTopic != "edgegw/gw-01/status" {
		t.Errorf("availability %+v", a)
	}
	if c.HomeAssistant.DiscoveryPrefix != "homeassistant" || c.HomeAssistant.Upstream {
		t.Errorf("homeassistant %+v", c.HomeAssistant)
	}
	if c.Sparkplug.EdgeNodeID != "gw-01" || c.Sparkplug.GroupID != "plant1" {
		t.Errorf("sparkplug %+v", c.Sparkplug)
	}
	c, err = Parse("gw.toml", withFiles(t, good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Availability.Enabled || c.HomeAssistant.Enabled || c.Sparkplug.Enabled {
		t.Errorf("something is on by default: %+v %+v %+v", c.Availability, c.HomeAssistant, c.Sparkplug)
	}
}

// TestEcosystemMistakes: each mistake in the new tables names its key and
// line (the tables start at line 18, where [buffer] was).
func TestEcosystemMistakes(t *testing.T) {
	cases := []struct{ name, tables, want string }{
		{"misspelt availability key", "[availability]\nenabled = true\ntopc = \"x\"",
			`gw.toml:20: availability.topc: unknown key "topc" (did you mean "topic"?)`},
		{"wildcard in availability topic", "[availability]\nenabled = true\ntopic = \"sites/+/status\"",
			`gw.toml:20: availability.topic: "sites/+/status" must not hold wildcards + or #`},
		{"local topic under $", "[availability]\nlocal_topic = \"$SYS/x\"",
			`gw.toml:19: availability.local_topic: "$SYS/x" must not start with $`},
		{"enabled as a string", "[homeassistant]\nenabled = \"yes\"",
			`gw.toml:19: homeassistant.enabled: wants true or false, not the string "yes"`},
		{"empty discovery prefix", "[homeassistant]\nenabled = true\ndiscovery_prefix = \"\"",
			`gw.toml:20: homeassistant.discovery_prefix: must not be empty`},
		{"sparkplug without group", "[sparkplug]\nenabled = true",
			`gw.toml:18: sparkplug.group_id: must not be empty`},
		{"sparkplug group with a slash", "[sparkplug]\nenabled = true\ngroup_id = \"plant/1\"",
			`gw.toml:20: sparkplug.group_id: "plant/1" must not hold '/', '+' or '#'`},
		{"sparkplug node id with a wildcard", "[sparkplug]\nenabled = true\ngroup_id = \"g\"\nedge_node_id = \"gw#\"",
			`gw.toml:21: sparkplug.edge_node_id: "gw#" must not hold`},
		{"unknown sparkplug key", "[sparkplug]\ngroup = \"g\"",
			`gw.toml:19: sparkplug.group: unknown key "group"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := withFiles(t, strings.Replace(good, "[buffer]", tc.tables+"\n[buffer]", 1))
			_, err := Parse("gw.toml", src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q; got:\n%v", tc.want, err)
			}
		})
	}
	// Without [upstream], Sparkplug and Home Assistant upstream cannot work.
	noUp := "[gateway]\nid = \"gw-01\"\n[homeassistant]\nenabled = true\nupstream = true\n[sparkplug]\nenabled = true\ngroup_id = \"g\"\n"
	_, err := Parse("gw.toml", noUp)
	for _, w := range []string{`gw.toml:5: homeassistant.upstream: needs an [upstream] broker`, `gw.toml:6: sparkplug: needs an [upstream] broker`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("want %q; got:\n%v", w, err)
		}
	}
}
