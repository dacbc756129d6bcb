package bridge

import (
	"log/slog"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// serverLimits are what the server's MQTT 5 CONNACK asks of us. An MQTT
// 3.1.1 server announces none of them.
type serverLimits struct {
	// receiveMax is the server's Receive Maximum: at most this many QoS 1
	// and 2 messages unacknowledged at once (65535 when not announced).
	receiveMax int
	// maxPacket is the server's Maximum Packet Size in bytes (0: no limit
	// but the protocol's): a larger PUBLISH is not sent; the message goes
	// to the dead-letter store.
	maxPacket uint32
	// maxQoS is the highest QoS the server accepts (2 when not announced).
	maxQoS byte
	// keepalive is the keepalive to keep: the Server Keep Alive replaces
	// ours when the server sends one.
	keepalive time.Duration
	// serverKeepalive reports that keepalive came from the server.
	serverKeepalive bool
	// assignedID is the Assigned Client Identifier, if the server chose one.
	assignedID string
	// topicAliasMax is the server's Topic Alias Maximum. We send no topic
	// aliases whatever it says (they save bytes but a lost alias map costs
	// a protocol error), so it is only reported.
	topicAliasMax uint16
}

func limitsOf(ack packets.Packet, version byte, keepalive time.Duration) serverLimits {
	l := serverLimits{receiveMax: 65535, maxQoS: 2, keepalive: keepalive}
	if version != 5 {
		return l
	}
	p := ack.Properties
	if p.ReceiveMaximum > 0 {
		l.receiveMax = int(p.ReceiveMaximum)
	}
	l.maxPacket = p.MaximumPacketSize
	if p.MaximumQosFlag && p.MaximumQos < 2 {
		l.maxQoS = p.MaximumQos
	}
	if p.ServerKeepAliveFlag {
		l.serverKeepalive = true
		l.keepalive = time.Duration(p.ServerKeepAlive) * time.Second
		if l.keepalive <= 0 {
			// Keep alive 0 switches pings off; we still need to notice a
			// dead link, so we keep pinging at our own period.
			l.keepalive = keepalive
		}
	}
	l.assignedID = p.AssignedClientID
	l.topicAliasMax = p.TopicAliasMaximum
	return l
}

// log says what the server's limits change for us, at Info (Warn where a
// guarantee is weakened).
func (l serverLimits) log(log *slog.Logger, o *Options) {
	if l.maxQoS < 2 {
		log.Warn("the upstream broker allows at most this QoS; QoS 2 messages are sent at that QoS (no exactly-once)", "maximum_qos", l.maxQoS)
	}
	var attrs []any
	if l.receiveMax < o.Inflight {
		attrs = append(attrs, "receive_maximum", l.receiveMax, "inflight", o.Inflight)
	}
	if l.maxPacket > 0 {
		attrs = append(attrs, "maximum_packet_size", l.maxPacket)
	}
	if l.serverKeepalive && l.keepalive != o.Keepalive {
		attrs = append(attrs, "server_keepalive", l.keepalive, "keepalive", o.Keepalive)
	}
	if l.assignedID != "" {
		attrs = append(attrs, "assigned_client_id", l.assignedID)
	}
	if len(attrs) > 0 {
		log.Info("the upstream broker set limits for this session; we keep to them (window = min(inflight, receive_maximum); larger messages go to the dead-letter store)", attrs...)
	}
}
