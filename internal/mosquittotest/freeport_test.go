package mosquittotest

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortOutsideEphemeralRange: the port is below the kernel's
// ephemeral range (so no outgoing connection can take it while a test
// restarts its listener) and can be listened on.
func TestFreePortOutsideEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		p := FreePort(t)
		if p < 10000 || p >= low {
			t.Fatalf("FreePort gave %d, want a port in [10000, %d)", p, low)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("FreePort gave %d, which cannot be listened on: %v", p, err)
		}
		l.Close()
	}
}
