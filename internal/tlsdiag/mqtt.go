package tlsdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	paho "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/edgegw/edgegw/internal/connack"
)

// ConnackError is a CONNACK that refused the connection (MQTT 3.1.1 return
// codes 1 to 5).
type ConnackError struct{ ReturnCode byte }

func (e *ConnackError) Error() string {
	return fmt.Sprintf("mqtt: connection refused by the broker: CONNACK return code %d (%s)", e.ReturnCode, connackText(e.ReturnCode))
}

// ConnackCode returns the return code; Explain recognises any error with
// this method (such as the bridge's own refusal type), MQTT 3.1.1 codes and
// MQTT 5 reason codes alike.
func (e *ConnackError) ConnackCode() byte { return e.ReturnCode }

// connackCoder is an error that carries a CONNACK return or reason code.
type connackCoder interface{ ConnackCode() byte }

// v3Code maps an MQTT 5 CONNACK reason code onto the MQTT 3.1.1 return
// code that means the same; 3.1.1 codes pass through.
func v3Code(rc byte) byte { return connack.V3(rc) }

func connackText(rc byte) string {
	if text, ok := connack.Text(rc); ok {
		return text
	}
	return "unknown return code"
}

// connackFromPaho maps the errors paho.mqtt.golang returns for a refused
// CONNACK onto ConnackError, so the bridge's errors read the same.
func connackFromPaho(err error) *ConnackError {
	for rc, e := range paho.ConnErrors {
		if rc != 0 && e != nil && errors.Is(err, e) && rc <= 5 {
			return &ConnackError{ReturnCode: rc}
		}
	}
	return nil
}

// ProtocolError says that the server answered the CONNECT with bytes that
// are not a CONNACK. First holds the first bytes received.
type ProtocolError struct{ First []byte }

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("mqtt: expected a CONNACK, got bytes % x", e.First)
}

// connectPacket encodes a CONNECT at protocol level version (4: MQTT 3.1.1,
// 5: MQTT 5, with no properties) with a clean session and a 30 s keepalive.
//
// Why tls-check writes its own CONNECT and reads its own CONNACK instead of
// using the bridge's codec (mochi's packets): internal/ may not import the
// bridge (imports point from the bridge to internal, never back) nor mochi
// (only broker and bridge may; broker's TestOnlyBrokerImportsMochi checks
// it), and paho's codec has no MQTT 5. It is also a probe, not a session:
// when the answer is not a CONNACK it keeps the raw first bytes, which tell
// a TLS port from a plain one (0x15/0x16) and a broker from another
// service; a codec rejects those bytes without keeping them. It is two
// packets, tested against paho's decoder (TestConnectPacketDecodes) and a
// real Mosquitto (TestMisconfig); the refusal codes come from
// internal/connack like the bridge's.
func connectPacket(clientID, username string, password []byte, version byte) []byte {
	str := func(b []byte, s []byte) []byte {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		return append(b, s...)
	}
	flags := byte(0x02) // clean session
	var body []byte
	body = str(body, []byte("MQTT"))
	if username != "" {
		flags |= 0x80
		if password != nil {
			flags |= 0x40
		}
	}
	body = append(body, version, flags, 0, 30)
	if version == 5 {
		body = append(body, 0) // no properties
	}
	body = str(body, []byte(clientID))
	if username != "" {
		body = str(body, []byte(username))
		if password != nil {
			body = str(body, password)
		}
	}
	// MQTT's Remaining Length (a Variable Byte Integer, 1.5.5) is the
	// unsigned LEB128 that encoding/binary writes as a uvarint.
	pk := binary.AppendUvarint([]byte{0x10}, uint64(len(body)))
	return append(pk, body...)
}

// readConnack reads a CONNACK and returns nil for an accepted connection, a
// *ConnackError for a refusal (MQTT 5 reason codes mapped onto the 3.1.1
// return code that means the same), a *ProtocolError for anything else.
func readConnack(r io.Reader, version byte) error {
	buf := make([]byte, 2)
	n, err := io.ReadFull(r, buf)
	if err != nil {
		if n > 0 && buf[0] != 0x20 {
			return &ProtocolError{First: buf[:n]}
		}
		return err
	}
	if buf[0] != 0x20 || buf[1]&0x80 != 0 || buf[1] < 2 {
		more := make([]byte, 2)
		m, _ := io.ReadFull(r, more)
		return &ProtocolError{First: append(buf, more[:m]...)}
	}
	body := make([]byte, buf[1]) // at most 127 bytes: a CONNACK with a reason string fits
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	if version != 5 && buf[1] != 2 {
		return &ProtocolError{First: append(buf, body...)}
	}
	if rc := body[1]; rc != 0 {
		if version == 5 {
			rc = v3Code(rc)
		}
		return &ConnackError{ReturnCode: rc}
	}
	return nil
}
