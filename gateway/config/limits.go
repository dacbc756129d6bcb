package config

import (
	"fmt"
	"time"
)

// validateBrokerLimits checks the [broker] keys that bound what one
// network client may cost.
func validateBrokerLimits(report func(path, msg string), b *Broker) {
	checkSize(report, "broker.max_packet_size", b.MaxPacketSize)
	checkSize(report, "broker.client_queue", b.ClientQueue)
	checkDuration(report, "broker.connect_timeout", b.ConnectTimeout)
	checkDuration(report, "broker.write_timeout", b.WriteTimeout)
	if b.MaxPacketSize.err == nil && (b.MaxPacketSize.Bytes < 1<<10 || b.MaxPacketSize.Bytes > 256<<20) {
		report("broker.max_packet_size", fmt.Sprintf("%d bytes is out of range: 1KiB to 256MiB (MQTT's own limit); the default is 256KiB", b.MaxPacketSize.Bytes))
	}
	if b.ClientQueue.err == nil && b.ClientQueue.Bytes < 0 {
		report("broker.client_queue", "must not be negative")
	}
	if b.MaxConnections < 1 || b.MaxConnections > 65535 {
		report("broker.max_connections", fmt.Sprintf("%d is out of range: 1 to 65535 connections", b.MaxConnections))
	}
	for _, k := range []struct {
		key string
		v   Duration
	}{{"broker.connect_timeout", b.ConnectTimeout}, {"broker.write_timeout", b.WriteTimeout}} {
		if k.v.err == nil && k.v.Duration < 100*time.Millisecond {
			report(k.key, fmt.Sprintf("%s is too short: at least 100ms", k.v.Duration))
		}
	}
}

// Protected reports whether [broker] protect_topics is on (the default).
func (b *Broker) Protected() bool { return b.ProtectTopics == nil || *b.ProtectTopics }
