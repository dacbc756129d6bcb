package gateway

import (
	"strings"
	"testing"
)

// TestHTTPListenOnNetworkWarns: an http_listen reachable from the network
// is warned about at start; a loopback one is not.
func TestHTTPListenOnNetworkWarns(t *testing.T) {
	cases := []struct {
		listen string
		warn   bool
	}{
		{"127.0.0.1:0", false},
		{"localhost:0", false},
		{"0.0.0.0:0", true},
		{":0", true},
	}
	for _, tc := range cases {
		t.Run(tc.listen, func(t *testing.T) {
			cfg := strings.Replace(simConfig, `http_listen = "127.0.0.1:0"`, `http_listen = "`+tc.listen+`"`, 1)
			_, logs, _, _ := startGateway(t, cfg, opsSettings{})
			got := strings.Contains(logs.String(), "level=WARN msg=\"the health and metrics endpoint is reachable from the network")
			if got != tc.warn {
				t.Fatalf("http_listen %q: warned = %v, want %v\n%s", tc.listen, got, tc.warn, logs.String())
			}
		})
	}
}
