package bridge

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The upstream session speaks MQTT with the packet codec of mochi-mqtt (the
// same code our embedded broker runs), so the bytes on the wire are encoded
// and decoded by one well-tested implementation.

const maxPacket = 16 << 20 // refuse absurd lengths from a broken peer

// readPacket reads one whole packet. The returned packet's slices do not
// alias r's buffer.
func readPacket(r *bufio.Reader, version byte) (packets.Packet, error) {
	var pk packets.Packet
	hb, err := r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return pk, &errMalformed{fmt.Sprintf("bad packet header byte 0x%02x: %v", hb, err)}
	}
	n, _, err := packets.DecodeLength(r)
	if err != nil {
		return pk, &errMalformed{fmt.Sprintf("bad packet length: %v", err)}
	}
	if n > maxPacket {
		return pk, &errMalformed{fmt.Sprintf("packet of %d bytes is over the %d byte limit", n, maxPacket)}
	}
	pk.FixedHeader.Remaining = n
	pk.ProtocolVersion = version
	switch pk.FixedHeader.Type {
	case packets.Puback, packets.Pubrec, packets.Pubcomp:
		if n == 2 || n == 3 {
			// The common acknowledgement: packet id and, in MQTT 5, maybe a
			// reason code (no properties). Decoded here as mochi does,
			// without allocating a buffer for it.
			var b [3]byte
			if _, err := io.ReadFull(r, b[:n]); err != nil {
				return pk, err
			}
			pk.PacketID = uint16(b[0])<<8 | uint16(b[1])
			if version == 5 && n == 3 {
				pk.ReasonCode = b[2]
			}
			return pk, nil
		}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return pk, err
	}
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(buf)
	case packets.Publish:
		err = pk.PublishDecode(buf)
	case packets.Puback:
		err = pk.PubackDecode(buf)
	case packets.Pubrec:
		err = pk.PubrecDecode(buf)
	case packets.Pubrel:
		err = pk.PubrelDecode(buf)
	case packets.Pubcomp:
		err = pk.PubcompDecode(buf)
	case packets.Suback:
		err = pk.SubackDecode(buf)
	case packets.Unsuback:
		err = pk.UnsubackDecode(buf)
	case packets.Pingresp:
	case packets.Disconnect:
		err = pk.DisconnectDecode(buf)
	default:
		err = fmt.Errorf("unexpected packet type %d from the server", pk.FixedHeader.Type)
	}
	if err != nil {
		return pk, &errMalformed{fmt.Sprintf("malformed %s packet: %v", packetName(pk.FixedHeader.Type), err)}
	}
	return pk, nil
}

// encode appends a packet's bytes to buf.
func encode(buf *bytes.Buffer, pk packets.Packet) error {
	switch pk.FixedHeader.Type {
	case packets.Connect:
		return pk.ConnectEncode(buf)
	case packets.Publish:
		return pk.PublishEncode(buf)
	case packets.Puback:
		return pk.PubackEncode(buf)
	case packets.Pubrec:
		return pk.PubrecEncode(buf)
	case packets.Pubrel:
		return pk.PubrelEncode(buf)
	case packets.Pubcomp:
		return pk.PubcompEncode(buf)
	case packets.Subscribe:
		return pk.SubscribeEncode(buf)
	case packets.Pingreq:
		return pk.PingreqEncode(buf)
	case packets.Disconnect:
		return pk.DisconnectEncode(buf)
	}
	return fmt.Errorf("cannot encode packet type %d", pk.FixedHeader.Type)
}

// appendPublish appends the PUBLISH of topic and payload at QoS q (packet
// identifier id when q > 0), with no properties in MQTT 5: the bytes
// mochi's PublishEncode writes for that packet, without its allocations.
func appendPublish(dst []byte, topic string, payload []byte, q byte, id uint16, retain, dup bool, version byte) []byte {
	hb := byte(packets.Publish<<4) | q<<1
	if dup {
		hb |= 1 << 3
	}
	if retain {
		hb |= 1
	}
	n := 2 + len(topic) + len(payload)
	if q > 0 {
		n += 2
	}
	if version == 5 {
		n++ // property length 0
	}
	dst = append(dst, hb)
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			break
		}
	}
	dst = append(dst, byte(len(topic)>>8), byte(len(topic)))
	dst = append(dst, topic...)
	if q > 0 {
		dst = append(dst, byte(id>>8), byte(id))
	}
	if version == 5 {
		dst = append(dst, 0)
	}
	return append(dst, payload...)
}

// publishSize is the encoded size of a PUBLISH of m at QoS q, to hold it
// against the server's Maximum Packet Size before sending.
func publishSize(topic string, payload []byte, q, version byte) int {
	n := 2 + len(topic) + len(payload)
	if q > 0 {
		n += 2
	}
	if version == 5 {
		n++ // property length 0: we send no properties on PUBLISH
	}
	hdr := 2
	for l := n >> 7; l > 0; l >>= 7 {
		hdr++
	}
	return hdr + n
}

func packetName(t byte) string {
	if n, ok := packets.PacketNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type-%d", t)
}

// pid maps an outbox sequence number to a packet identifier. The mapping is
// fixed, so after a crash a QoS 2 message is resent with the identifier the
// upstream broker already knows it by, with no extra state written per
// message. The sender never has two messages 65535 apart in flight, so no
// two in-flight messages share an identifier.
func pid(seq uint64) uint16 { return uint16((seq-1)%65535) + 1 }
