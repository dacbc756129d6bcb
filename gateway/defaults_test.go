package gateway

import (
	"testing"
	"time"

	"github.com/edgegw/edgegw/bridge"
	"github.com/edgegw/edgegw/bridge/outbox"
	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/gateway/config"
)

// TestConfigDefaultsAreThePackagesDefaults: the configuration's defaults
// (what the README documents) are the values the owning packages apply to a
// zero option, so a gateway run without the key and a package used on its
// own behave alike. gateway/config imports none of our packages, so the
// values are written twice; this test makes them one fact.
func TestConfigDefaultsAreThePackagesDefaults(t *testing.T) {
	def := config.Default()
	cfg, err := config.Parse("defaults.toml", "[gateway]\nid = \"gw\"\n[upstream]\naddress = \"mqtts://up.example:8883\"\n")
	if cfg == nil {
		t.Fatalf("parse: %v", err)
	}
	u := cfg.Upstream
	if u == nil {
		t.Fatalf("[upstream] was not decoded (errors: %v)", err)
	}
	cases := []struct {
		key       string
		cfg, pkgs any
	}{
		{"broker.max_packet_size", def.Broker.MaxPacketSize.Bytes, int64(broker.DefaultMaxPacketSize)},
		{"broker.max_connections", def.Broker.MaxConnections, broker.DefaultMaxConnections},
		{"broker.connect_timeout", def.Broker.ConnectTimeout.Duration, broker.DefaultConnectTimeout},
		{"broker.write_timeout", def.Broker.WriteTimeout.Duration, broker.DefaultWriteTimeout},
		{"broker.client_queue", def.Broker.ClientQueue.Bytes, int64(broker.DefaultClientQueue)},
		{"buffer.segment_bytes", def.Buffer.SegmentBytes.Bytes, int64(outbox.DefaultSegmentBytes)},
		{"buffer.spill_after", def.Buffer.SpillAfter.Duration, time.Duration(outbox.DefaultSpillAfter)},
		{"buffer.memory_bytes", def.Buffer.MemoryBytes.Bytes, int64(outbox.DefaultMemoryBytes)},
		{"upstream.keepalive", u.Keepalive.Duration, bridge.DefaultKeepalive},
		{"upstream.protocol", u.Protocol, "3.1.1"},
		{"upstream.inflight", u.Inflight, bridge.DefaultInflight},
		{"upstream.backoff_min", u.BackoffMin.Duration, bridge.DefaultBackoffMin},
		{"upstream.backoff_max", u.BackoffMax.Duration, bridge.DefaultBackoffMax},
		{"upstream.connect_timeout", u.ConnectTimeout.Duration, bridge.DefaultConnectTimeout},
	}
	for _, c := range cases {
		if c.cfg != c.pkgs {
			t.Errorf("%s: the configuration's default is %v, the package's is %v: change both or neither", c.key, c.cfg, c.pkgs)
		}
	}
	if bridge.DefaultVersion != 4 {
		t.Errorf("bridge.DefaultVersion = %d, but the configuration's default protocol is 3.1.1 (level 4)", bridge.DefaultVersion)
	}
}
