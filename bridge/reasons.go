package bridge

import "fmt"

// MQTT 5 reason codes the upstream session acts on or names in the log
// (MQTT 5.0, 2.4 "Reason Code").
var reasonNames = map[byte]string{
	0x00: "success",
	0x04: "disconnect with will message",
	0x10: "no matching subscribers",
	0x80: "unspecified error",
	0x81: "malformed packet",
	0x82: "protocol error",
	0x83: "implementation specific error",
	0x84: "unsupported protocol version",
	0x85: "client identifier not valid",
	0x86: "bad user name or password",
	0x87: "not authorized",
	0x88: "server unavailable",
	0x89: "server busy",
	0x8A: "banned",
	0x8B: "server shutting down",
	0x8C: "bad authentication method",
	0x8D: "keep alive timeout",
	0x8E: "session taken over",
	0x8F: "topic filter invalid",
	0x90: "topic name invalid",
	0x91: "packet identifier in use",
	0x92: "packet identifier not found",
	0x93: "receive maximum exceeded",
	0x94: "topic alias invalid",
	0x95: "packet too large",
	0x96: "message rate too high",
	0x97: "quota exceeded",
	0x98: "administrative action",
	0x99: "payload format invalid",
	0x9A: "retain not supported",
	0x9B: "QoS not supported",
	0x9C: "use another server",
	0x9D: "server moved",
	0x9E: "shared subscriptions not supported",
	0x9F: "connection rate exceeded",
	0xA0: "maximum connect time",
	0xA1: "subscription identifiers not supported",
	0xA2: "wildcard subscriptions not supported",
}

// reasonText names a reason code and quotes the server's reason string, if
// it sent one: `0x97 quota exceeded ("too many in flight")`.
func reasonText(code byte, reasonString string) string {
	name, ok := reasonNames[code]
	if !ok {
		name = "unknown reason"
	}
	s := fmt.Sprintf("0x%02x %s", code, name)
	if reasonString != "" {
		s += fmt.Sprintf(" (%q)", reasonString)
	}
	return s
}

// permanentRefusal reports whether a PUBACK or PUBREC reason code means the
// server will never take this message as it is: resending it cannot help,
// so it goes to the dead-letter store. Every other code of 0x80 and above
// (quota exceeded, server busy, message rate too high, unspecified, …) is
// transient: the session backs off and sends the same message again, up to
// maxTransientRefusals times.
func permanentRefusal(code byte) bool {
	switch code {
	case 0x87, // not authorized
		0x90, // topic name invalid
		0x95, // packet too large
		0x99, // payload format invalid
		0x9A, // retain not supported
		0x9B: // QoS not supported
		return true
	}
	return false
}

// maxTransientRefusals is how often one message may be refused with a
// transient reason before it is treated as permanent: a broker that keeps
// saying "busy" about one message must not hold the messages behind it for
// ever.
const maxTransientRefusals = 5
