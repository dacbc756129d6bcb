package e2e

import "testing"

// TestCrashQoS2 proves QoS 2 is exactly once and in order: the crash-and-cut run of
// TestCrashQoS1 with QoS 2 end to end (local publisher, bridge rule and
// upstream subscriber). The local publisher keeps a persistent session and
// its store across the gateway's lives, as MQTT expects of a QoS 2 sender,
// so every message it stored is eventually acknowledged; each must arrive
// upstream exactly once, in order per topic.
func TestCrashQoS2(t *testing.T) { crashRun(t, 2, "") }
