package gateway

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	_ "github.com/edgegw/edgegw/devices/gpio"
	"github.com/edgegw/edgegw/gateway/config"
)

// TestEcosystemProtectedTopics: with protect_topics on, the availability
// states and the Home Assistant configs are the gateway's alone; on the
// local broker Home Assistant's switch command topic stays writable; with
// Sparkplug the NCMD/DCMD topics are commands from upstream only.
func TestEcosystemProtectedTopics(t *testing.T) {
	src := `
[gateway]
id = "gw-01"
data_dir = "/tmp/unused"
[broker]
listen = "127.0.0.1:0"
[upstream]
address = "mqtt://127.0.0.1:1"
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
remote_prefix = "sites/s1/gw-01/"
[homeassistant]
enabled = true
[sparkplug]
enabled = true
group_id = "plant1"
[[device]]
name = "door"
type = "sim"
[[device]]
name = "relay"
type = "gpio_out"
pin = "GPIO17"
`
	path := filepath.Join(t.TempDir(), "gw.toml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Build(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	p := g.protectedTopics()
	for _, want := range []string{"readings/door", "readings/relay", "edgegw/gw-01/status", "edgegw/gw-01/status/+", "homeassistant/+/gw-01/+/config"} {
		if !slices.Contains(p.Readings, want) {
			t.Errorf("%q not reserved for the gateway: %v", want, p.Readings)
		}
	}
	for _, want := range []string{"spBv1.0/plant1/NCMD/gw-01", "spBv1.0/plant1/DCMD/gw-01/+"} {
		if !slices.Contains(p.Commands, want) {
			t.Errorf("%q not a command topic: %v", want, p.Commands)
		}
	}
	if slices.Contains(p.Commands, "readings/relay/set") {
		t.Errorf("the switch's command topic is protected, so a local Home Assistant could not drive it: %v", p.Commands)
	}
}
