package tlsdiag

import (
	"bytes"
	"strings"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang/packets"
)

// TestConnectPacketDecodes holds tls-check's hand-written CONNECT to a
// second implementation: paho's decoder reads back every field for MQTT
// 3.1.1, and the MQTT 5 form is the same with level 5 and an empty
// property block.
func TestConnectPacketDecodes(t *testing.T) {
	long := strings.Repeat("c", 300)     // remaining length needs two bytes
	longer := strings.Repeat("c", 20000) // and three
	cases := []struct {
		name, clientID, username string
		password                 []byte
	}{
		{"no credentials", "edgegw-tls-check", "", nil},
		{"user name only", "gw-01", "gw", nil},
		{"user name and password", "gw-01", "gw", []byte("s3cret")},
		{"empty password is sent", "gw-01", "gw", []byte{}},
		{"password without user name is not sent", "gw-01", "", []byte("x")},
		{"long client id", long, "gw", []byte("pw")},
		{"longer client id", longer, "", nil},
	}
	for _, c := range cases {
		b := connectPacket(c.clientID, c.username, c.password, 4)
		cp, err := paho.ReadPacket(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: paho cannot read our CONNECT % x: %v", c.name, b, err)
			continue
		}
		p, ok := cp.(*paho.ConnectPacket)
		if !ok {
			t.Errorf("%s: paho read a %T, not a CONNECT", c.name, cp)
			continue
		}
		wantPw := c.username != "" && c.password != nil
		if p.ProtocolName != "MQTT" || p.ProtocolVersion != 4 || !p.CleanSession || p.Keepalive != 30 ||
			p.ClientIdentifier != c.clientID || p.UsernameFlag != (c.username != "") || p.Username != c.username ||
			p.PasswordFlag != wantPw || (wantPw && !bytes.Equal(p.Password, c.password)) {
			t.Errorf("%s: paho read %+v", c.name, p)
		}
		if rc := p.Validate(); rc != paho.Accepted {
			t.Errorf("%s: paho finds the CONNECT invalid (return code %d)", c.name, rc)
		}

		v5 := connectPacket(c.clientID, c.username, c.password, 5)
		// Level 5 adds one byte, the empty property block after keepalive.
		b4, b5 := body(b), body(v5)
		if len(b5) != len(b4)+1 || !bytes.Equal(b5[:6], b4[:6]) || b5[6] != 5 || !bytes.Equal(b5[7:10], b4[7:10]) ||
			b5[10] != 0 || !bytes.Equal(b5[11:], b4[10:]) {
			t.Errorf("%s: MQTT 5 CONNECT % x is not the 3.1.1 one % x with level 5 and no properties", c.name, v5, b)
		}
	}
}

// body is a packet without its fixed header.
func body(pk []byte) []byte {
	i := 1
	for i < len(pk) && pk[i]&0x80 != 0 {
		i++
	}
	return pk[i+1:]
}
