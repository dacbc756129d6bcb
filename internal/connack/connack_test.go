package connack

import "testing"

func TestTextAndV3(t *testing.T) {
	cases := []struct {
		rc     byte
		text   string
		ok     bool
		v3     byte
		reason string
	}{
		{rc: 0, ok: false, v3: 0, reason: "accepted is not a refusal"},
		{rc: 1, text: "unacceptable protocol version", ok: true, v3: 1, reason: "3.1.1 code"},
		{rc: 2, text: "identifier rejected", ok: true, v3: 2, reason: "3.1.1 code"},
		{rc: 3, text: "server unavailable", ok: true, v3: 3, reason: "3.1.1 code"},
		{rc: 4, text: "bad user name or password", ok: true, v3: 4, reason: "3.1.1 code"},
		{rc: 5, text: "not authorised", ok: true, v3: 5, reason: "3.1.1 code"},
		{rc: 6, ok: false, v3: 6, reason: "reserved 3.1.1 code"},
		{rc: 0x84, text: "unacceptable protocol version", ok: true, v3: 1, reason: "MQTT 5 same meaning"},
		{rc: 0x85, text: "identifier rejected", ok: true, v3: 2, reason: "MQTT 5 same meaning"},
		{rc: 0x86, text: "bad user name or password", ok: true, v3: 4, reason: "MQTT 5 same meaning"},
		{rc: 0x87, text: "not authorised", ok: true, v3: 5, reason: "MQTT 5 same meaning"},
		{rc: 0x88, text: "server unavailable", ok: true, v3: 3, reason: "MQTT 5 same meaning"},
		{rc: 0x89, ok: false, v3: 3, reason: "server busy: only near unavailable"},
		{rc: 0x8A, ok: false, v3: 5, reason: "banned: only near not authorised"},
		{rc: 0x97, ok: false, v3: 0x97, reason: "quota exceeded has no 3.1.1 twin"},
	}
	for _, c := range cases {
		text, ok := Text(c.rc)
		if text != c.text || ok != c.ok {
			t.Errorf("Text(0x%02x) = %q, %v; want %q, %v (%s)", c.rc, text, ok, c.text, c.ok, c.reason)
		}
		if got := V3(c.rc); got != c.v3 {
			t.Errorf("V3(0x%02x) = %d; want %d (%s)", c.rc, got, c.v3, c.reason)
		}
	}
}
