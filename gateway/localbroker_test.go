package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/gateway/config"
)

// TestProtectedTopicsFromConfig: the reading topic of each device and the
// local side of each "in" rule are protected; a "both" rule is not (local
// clients publishing on it is its point); protect_topics = false turns it
// all off.
func TestProtectedTopicsFromConfig(t *testing.T) {
	base := `
[gateway]
id = "gw-01"
data_dir = "/tmp/unused"
[broker]
listen = "127.0.0.1:0"
%s
[upstream]
address = "mqtt://127.0.0.1:1"
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
[[upstream.topic]]
pattern = "cmd/#"
direction = "in"
local_prefix = "local/"
[[upstream.topic]]
pattern = "chat/#"
direction = "both"
[[device]]
name = "door"
type = "sim"
[[device]]
name = "hall"
type = "sim"
topic = "x/hall"
`
	cases := []struct {
		name, extra string
		want        broker.Protect
	}{
		{"default", "", broker.Protect{Readings: []string{"readings/door", "x/hall"}, Commands: []string{"local/cmd/#"}}},
		{"protect_topics = false", "protect_topics = false", broker.Protect{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gw.toml")
			if err := os.WriteFile(path, []byte(fmt.Sprintf(base, tc.extra)), 0o600); err != nil {
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
			o, err := g.brokerOptions()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(o.Protect, tc.want) {
				t.Fatalf("protected %+v, want %+v", o.Protect, tc.want)
			}
		})
	}
}
