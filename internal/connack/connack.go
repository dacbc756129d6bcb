// Package connack is the one table of CONNACK refusal codes: the MQTT 3.1.1
// return codes 1 to 5 (MQTT 3.1.1, 3.2.2.3) and the MQTT 5 reason codes that
// mean the same (MQTT 5.0, 3.2.2.2). The bridge names a refusal with it and
// tlsdiag explains one with it, so both say the same words for the same code.
//
// Concurrency: no state; every function may be called from any goroutine.
package connack

// texts names the MQTT 3.1.1 return codes; index 0 is acceptance.
var texts = [...]string{
	1: "unacceptable protocol version",
	2: "identifier rejected",
	3: "server unavailable",
	4: "bad user name or password",
	5: "not authorised",
}

// V3 maps an MQTT 5 CONNACK reason code onto the MQTT 3.1.1 return code
// that means the same, or the nearest (server busy counts as unavailable,
// banned as not authorised); 3.1.1 codes and any other code pass through.
func V3(rc byte) byte {
	switch rc {
	case 0x84: // unsupported protocol version
		return 1
	case 0x85: // client identifier not valid
		return 2
	case 0x88, 0x89: // server unavailable, server busy
		return 3
	case 0x86: // bad user name or password
		return 4
	case 0x87, 0x8A: // not authorized, banned
		return 5
	}
	return rc
}

// Text names a refusal: an MQTT 3.1.1 return code 1 to 5, or an MQTT 5
// reason code with the very same meaning (0x84 to 0x88). ok is false for
// any other code, which the caller names its own way (an MQTT 5 reason
// name, or the number).
func Text(rc byte) (text string, ok bool) {
	if rc >= 0x84 && rc <= 0x88 {
		rc = V3(rc)
	}
	if rc == 0 || int(rc) >= len(texts) {
		return "", false
	}
	return texts[rc], true
}
