package bridge

import (
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegw/edgegw/internal/tlsdiag"
	"github.com/edgegw/edgegw/internal/tlsx"
)

// TestExplainAfterTCP: when TCP worked, the diagnosis says what the MQTT
// server did instead of blaming the network or the port.
func TestExplainAfterTCP(t *testing.T) {
	cases := []struct {
		name    string
		version byte
		serve   func(fc *fakeConn)
		want    []string
		notWant []string
	}{
		{name: "no CONNACK in time is not a firewall", version: 4,
			serve: func(fc *fakeConn) { _, _ = fc.read() },
			want:  []string{"connection was made", "did not answer our MQTT CONNECT within 300ms"}, notWant: []string{"firewall"}},
		{name: "bytes that are not MQTT", version: 4,
			serve: func(fc *fakeConn) { _, _ = fc.nc.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")) },
			want:  []string{"bytes that are not MQTT"}, notWant: []string{"plain MQTT"}},
		{name: "an MQTT 5 CONNECT closed by a broker that only speaks 3.1.1", version: 5,
			serve: func(fc *fakeConn) { fc.nc.Close() },
			want:  []string{"closed the connection without answering our MQTT CONNECT", `protocol = "3.1.1"`}, notWant: []string{"plain MQTT", "firewall"}},
		{name: "a refusal quotes the reason string", version: 5,
			serve: func(fc *fakeConn) {
				_ = fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: 0x87, Properties: packets.Properties{ReasonString: "client gw-01 is not in group gateways"}})
			},
			want: []string{"not authorised", `"client gw-01 is not in group gateways"`}},
		{name: "a link that had been up did not fail to connect", version: 4,
			serve: func(fc *fakeConn) {
				_ = fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}})
				fc.nc.Close()
			},
			want: []string{"the server closed the connection"}, notWant: []string{"connecting", "plain MQTT"}},
		{name: "DISCONNECT reason code and string are quoted", version: 5,
			serve: func(fc *fakeConn) {
				_ = fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}})
				_ = fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ReasonCode: 0x97, Properties: packets.Properties{ReasonString: "daily quota used"}})
			},
			want: []string{"DISCONNECT", "0x97 quota exceeded", `"daily quota used"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBroker(t)
			b, _, _ := testBridge(t, fb.ln.Addr().String(), tc.version, func(o *Options) {
				o.ConnectTimeout = 300 * time.Millisecond
				o.BackoffMin, o.BackoffMax = time.Second, time.Second // one attempt is enough
				o.Explain = func(err error, addr string) string {
					cause, hint := tlsdiag.Explain(err, tlsx.Options{}, addr)
					return cause + " — " + hint
				}
			})
			fc := fb.next(t, 10*time.Second)
			tc.serve(fc)
			waitFor(t, 10*time.Second, "the attempt to end", func() bool { st := b.Stats(); return st.LastError != "" })
			got := b.Stats().LastError
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("cause %q lacks %q", got, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("cause %q says %q", got, w)
				}
			}
		})
	}
}
