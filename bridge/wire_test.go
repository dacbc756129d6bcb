package bridge

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestAppendPublish: the hand-written PUBLISH encoder writes the bytes
// mochi's codec writes for the same packet, in MQTT 3.1.1 and 5, at every
// QoS, with the flags, and across the remaining-length boundaries.
func TestAppendPublish(t *testing.T) {
	cases := []struct {
		name    string
		topic   string
		payload int
		q       byte
		id      uint16
		retain  bool
		dup     bool
	}{
		{name: "QoS 0, empty payload", topic: "a"},
		{name: "QoS 1, 100 bytes", topic: "sites/s1/gw-01/readings/door", payload: 100, q: 1, id: 1},
		{name: "QoS 2, DUP, retained", topic: "t", payload: 10, q: 2, id: 65535, retain: true, dup: true},
		{name: "remaining length 127 (one byte)", topic: "t", payload: 127 - 5, q: 1, id: 9},
		{name: "remaining length 128 (two bytes)", topic: "t", payload: 128 - 5, q: 1, id: 9},
		{name: "remaining length over 16383 (three bytes)", topic: "t/x", payload: 20000, q: 1, id: 300},
		{name: "remaining length over 2097151 (four bytes)", topic: "t", payload: 2100000, q: 1, id: 2},
	}
	for _, tc := range cases {
		for _, ver := range []byte{4, 5} {
			payload := []byte(strings.Repeat("p", tc.payload))
			pk := packets.Packet{
				FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: tc.q, Retain: tc.retain, Dup: tc.dup},
				TopicName:       tc.topic,
				Payload:         payload,
				PacketID:        tc.id,
				ProtocolVersion: ver,
			}
			var want bytes.Buffer
			if err := pk.PublishEncode(&want); err != nil {
				t.Fatal(err)
			}
			got := appendPublish([]byte("prefix"), tc.topic, payload, tc.q, tc.id, tc.retain, tc.dup, ver)
			if !bytes.Equal(got[:6], []byte("prefix")) || !bytes.Equal(got[6:], want.Bytes()) {
				n := min(len(got)-6, want.Len(), 40)
				t.Errorf("%s, version %d: got % x…, want % x…", tc.name, ver, got[6:6+n], want.Bytes()[:n])
			}
			if size := publishSize(tc.topic, payload, tc.q, ver); size != want.Len() {
				t.Errorf("%s, version %d: publishSize %d, encoded %d", tc.name, ver, size, want.Len())
			}
		}
	}
}

// TestReadAck: PUBACK, PUBREC and PUBCOMP of two and three bytes (read
// without allocating) decode as mochi decodes them; longer ones (MQTT 5
// properties) still go through mochi's codec.
func TestReadAck(t *testing.T) {
	cases := []struct {
		name   string
		pk     packets.Packet
		reason byte
	}{
		{name: "PUBACK", pk: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 513}},
		{name: "PUBREC", pk: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: 7}},
		{name: "PUBCOMP", pk: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: 65535}},
		{name: "PUBACK quota exceeded", pk: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 2, ReasonCode: 0x97}, reason: 0x97},
		{name: "PUBACK refused with a reason string", pk: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: 3, ReasonCode: 0x87,
			Properties: packets.Properties{ReasonString: "not yours"}}, reason: 0x87},
	}
	for _, tc := range cases {
		for _, ver := range []byte{4, 5} {
			pk := tc.pk
			pk.ProtocolVersion = ver
			b, err := encodeServerPacket(pk)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readPacket(bufio.NewReader(bytes.NewReader(b)), ver)
			if err != nil {
				t.Fatalf("%s, version %d: %v", tc.name, ver, err)
			}
			want := byte(0)
			if ver == 5 {
				want = tc.reason
			}
			if got.FixedHeader.Type != pk.FixedHeader.Type || got.PacketID != pk.PacketID || got.ReasonCode != want {
				t.Errorf("%s, version %d: type %d id %d reason 0x%02x, want %d %d 0x%02x", tc.name, ver,
					got.FixedHeader.Type, got.PacketID, got.ReasonCode, pk.FixedHeader.Type, pk.PacketID, want)
			}
			if ver == 5 && got.Properties.ReasonString != pk.Properties.ReasonString {
				t.Errorf("%s: reason string %q, want %q", tc.name, got.Properties.ReasonString, pk.Properties.ReasonString)
			}
		}
	}
}
