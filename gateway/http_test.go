package gateway

import (
	"strings"
	"testing"

	"github.com/edgegw/edgegw/internal/ratelog"
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

// TestWarningsAreRateLimited: the gateway's logger, as every component gets
// it, lets a warning that repeats per message through a few times only.
func TestWarningsAreRateLimited(t *testing.T) {
	g, logs, _, _ := startGateway(t, simConfig, opsSettings{})
	blog := g.log.With("component", "bridge")
	for range 20000 {
		blog.Warn("message from upstream matches no \"in\" rule; dropped", "topic", "x")
	}
	h, ok := g.log.Handler().(*ratelog.Handler)
	if !ok {
		t.Fatalf("the gateway's log handler is %T, not rate-limited", g.log.Handler())
	}
	if n := h.Suppressed(); n != 20000-5 {
		t.Fatalf("%d of 20000 identical warnings suppressed, want %d", n, 20000-5)
	}
	if n := strings.Count(logs.String(), "matches no"); n != 5 {
		t.Fatalf("%d lines written for 20000 identical warnings, want 5", n)
	}
}
