package bridge

import "time"

// The defaults New applies to zero Options fields. The gateway's
// configuration (gateway/config, which imports none of our packages) has
// the same user-facing defaults for [upstream]; a test in package gateway
// holds the two together, so they are one fact written where each side
// can read it.
const (
	DefaultKeepalive  = 30 * time.Second
	DefaultVersion    = 4 // MQTT 3.1.1
	DefaultInflight   = 1024
	DefaultBackoffMin = 250 * time.Millisecond
	DefaultBackoffMax = 2 * time.Second
	// DefaultConnectTimeout bounds dialing, the TLS handshake and waiting
	// for CONNACK (and SUBACK).
	DefaultConnectTimeout = 10 * time.Second
)
