package config

import (
	"fmt"
	"strings"
	"testing"
)

// profileConfig is a configuration with a profile line and one out rule;
// the rule's qos line is line 10, its remote_prefix line 11.
func profileConfig(profile, upstreamExtra, qos, prefix string) string {
	return fmt.Sprintf(`[gateway]
id = "gw-01"
data_dir = "/tmp/edgegw"
[upstream]
address = "mqtt://127.0.0.1:1883"
profile = %q
%s
[[upstream.topic]]
pattern = "readings/#"
qos = %s
remote_prefix = %q
`, profile, upstreamExtra, qos, prefix)
}

// TestProfiles: each profile's defaults, explicit keys winning, and the
// rules a profile cannot carry named with their line and the fix.
func TestProfiles(t *testing.T) {
	cases := []struct {
		name                   string
		profile, extra, qos, p string
		// errors: "line: text" fragments, in order; none = valid.
		errors               []string
		inflight, replayRate int
		maxPayload           int64
	}{
		{name: "generic changes nothing", profile: "generic", qos: "2", p: "a/b/c/d/e/f/g/h/i/",
			inflight: 1024},
		{name: "aws defaults", profile: "aws-iot-core", qos: "1", p: "dt/gw-01/",
			inflight: 100, replayRate: 100, maxPayload: 128 << 10},
		{name: "aws: explicit keys win", profile: "aws-iot-core", extra: "inflight = 50\nreplay_rate = 20\nmax_payload = \"64KiB\"", qos: "1", p: "dt/",
			inflight: 50, replayRate: 20, maxPayload: 64 << 10},
		{name: "aws: a QoS 2 rule", profile: "aws-iot-core", qos: "2", p: "dt/",
			errors: []string{":10: upstream.topic[0].qos: 2 is more than aws-iot-core accepts", "write qos = 1"}},
		{name: "aws: 8 slashes in the remote topic", profile: "aws-iot-core", qos: "1", p: "a/b/c/d/e/f/g/",
			errors: []string{":11: upstream.topic[0].remote_prefix:", "8 slashes", "at most 7", `"g/"`}},
		{name: "aws: keepalive below 30 s", profile: "aws-iot-core", extra: "keepalive = \"10s\"", qos: "1", p: "dt/",
			errors: []string{":7: upstream.keepalive: 10s is outside what aws-iot-core accepts", `write keepalive = "30s"`}},
		{name: "azure defaults", profile: "azure-iot-hub", qos: "1", p: "devices/gw-01/messages/events/",
			inflight: 16, maxPayload: 256 << 10},
		{name: "azure: a remote prefix it refuses", profile: "azure-iot-hub", qos: "1", p: "sites/s1/",
			errors: []string{":11: upstream.topic[0].remote_prefix:", `"sites/s1/" will be refused`, `write remote_prefix = "devices/gw-01/messages/events/"`}},
		{name: "azure: a QoS 2 rule", profile: "azure-iot-hub", qos: "2", p: "devices/gw-01/messages/events/",
			errors: []string{":10: upstream.topic[0].qos: 2 is more than azure-iot-hub accepts", "write qos = 1"}},
		{name: "an unknown profile", profile: "aws", qos: "1", p: "dt/",
			errors: []string{":6: upstream.profile:", "aws-iot-core"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("gw.toml", profileConfig(tc.profile, tc.extra, tc.qos, tc.p))
			if len(tc.errors) == 0 {
				if err != nil {
					t.Fatalf("unexpected errors:\n%v", err)
				}
				u := c.Upstream
				if u.Inflight != tc.inflight || u.ReplayRate != tc.replayRate || u.MaxPayload.Bytes != tc.maxPayload {
					t.Errorf("inflight %d replay_rate %d max_payload %d, want %d %d %d", u.Inflight, u.ReplayRate, u.MaxPayload.Bytes, tc.inflight, tc.replayRate, tc.maxPayload)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v", tc.errors)
			}
			msg := err.Error()
			at := 0
			for _, w := range tc.errors {
				i := strings.Index(msg[at:], w)
				if i < 0 {
					t.Fatalf("errors lack %q (in order):\n%s", w, msg)
				}
				at += i
			}
		})
	}
}
