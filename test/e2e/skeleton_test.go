package e2e

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/devices/rdm6300"
	"github.com/edgegw/edgegw/devices/serialtest"
	"github.com/edgegw/edgegw/internal/testenv"
)

func gatewayConfig(dataDir, upstreamAddr string, tlsBlock string, devices string) string {
	return fmt.Sprintf(`
[gateway]
id = "gw-01"
data_dir = %q
http_listen = ""

[broker]
listen = "127.0.0.1:0"

[upstream]
address = "mqtts://%s"
keepalive = "5s"
backoff_max = "500ms"
%s
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = 1
remote_prefix = "sites/s1/gw-01/"

%s
`, dataDir, upstreamAddr, tlsBlock, devices)
}

// TestRFIDToUpstream is the walking skeleton end to end: 1,000 distinct
// RDM6300 frames written into a real pty, with 50 corrupted ones mixed in,
// arrive at a subscriber of a real Mosquitto over mutual TLS with the right
// uids and seq 1..1000 without a gap; the corrupted ones are counted.
func TestRFIDToUpstream(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	f := pki(t)
	up := upstream(t, f)
	gwPair := clientPair(t, f, "gw-01")
	tlsBlock := fmt.Sprintf("[upstream.tls]\ncafile = %q\ncertfile = %q\nkeyfile = %q\ntls_version = \"1.2\"\n", f.CA.Cert, gwPair.Cert, gwPair.Key)
	path, master := serialtest.NewPTY(t)
	dev := fmt.Sprintf("[[device]]\nname = \"door\"\ntype = \"rdm6300\"\nport = %q\ndedupe = \"0s\"\n", path)

	sub := subscribe(t, f, up.Addr(), "sites/s1/gw-01/readings/#", 1)
	gw, logs := runGateway(t, gatewayConfig(t.TempDir(), up.Addr(), tlsBlock, dev))
	waitUntil(t, 20*time.Second, "the upstream link", func() bool { s := gw.Status(); return s.Bridge != nil && s.Bridge.LinkUp })

	const n, bad = 1000, 50
	rng := rand.New(rand.NewPCG(1, 2))
	var stream []byte
	uids := make([]string, n)
	badAt := map[int]bool{}
	for len(badAt) < bad {
		badAt[rng.IntN(n)] = true
	}
	k := 0
	for i := 0; i < n; i++ {
		uids[i] = fmt.Sprintf("%02X%08X", i%256, 0x10000000+i*7919)
		fr, err := rdm6300.Frame(uids[i])
		if err != nil {
			t.Fatal(err)
		}
		if badAt[i] {
			c := append([]byte(nil), fr...)
			if k%2 == 0 {
				c[12] ^= 0x01 // checksum digit wrong
				if c[12] == 0x02 || c[12] == 0x03 {
					c[12] = 'Z'
				}
			} else {
				c[5] = 'G' // not a hex digit
			}
			k++
			stream = append(stream, c...)
		}
		stream = append(stream, fr...)
	}
	if err := serialtest.WriteSplit(master, stream, rng); err != nil {
		t.Fatal(err)
	}

	msgs := sub.waitFor(t, 60*time.Second, "1000 readings upstream", func(m []paho.Message) bool { return len(m) >= n })
	for i, m := range msgs[:n] {
		r := decode(t, m)
		if m.Topic() != "sites/s1/gw-01/readings/door" {
			t.Fatalf("message %d on topic %q", i, m.Topic())
		}
		if r.Seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d, want %d (gap or reorder)", i, r.Seq, i+1)
		}
		if r.UID != uids[i] || r.Gateway != "gw-01" || r.Device != "door" || r.Type != "rdm6300" {
			t.Fatalf("message %d: %+v, want uid %s", i, r, uids[i])
		}
		if _, err := time.Parse(time.RFC3339Nano, r.TS); err != nil || !strings.HasSuffix(r.TS, "Z") || len(r.TS) != len("2026-11-22T01:02:03.456Z") {
			t.Fatalf("message %d: ts %q is not RFC 3339 UTC with ms", i, r.TS)
		}
	}
	if len(msgs) != n {
		t.Errorf("received %d messages, want exactly %d", len(msgs), n)
	}
	st := gw.Status()
	c := st.Devices[0].Counters
	if got := c["bad_checksum"] + c["bad_frame"]; got != bad {
		t.Errorf("bad frames counted: %v, want %d in all", c, bad)
	}
	t.Logf("1000 readings arrived upstream; counters %v; bridge sent %d acked %d", c, st.Bridge.SentPublish, st.Bridge.Acked)
	_ = logs
}

// TestNoClientCertificateExplained: the same gateway without a client
// certificate is refused by the broker, and the log says why in words.
func TestNoClientCertificateExplained(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	f := pki(t)
	up := upstream(t, f)
	tlsBlock := fmt.Sprintf("[upstream.tls]\ncafile = %q\n", f.CA.Cert)
	dev := "[[device]]\nname = \"sim1\"\ntype = \"sim\"\ninterval = \"100ms\"\n"
	gw, logs := runGateway(t, gatewayConfig(t.TempDir(), up.Addr(), tlsBlock, dev))
	waitUntil(t, 20*time.Second, "a failed connect", func() bool { s := gw.Status(); return s.Bridge.ConnectFailures > 0 })
	st := gw.Status()
	if st.Bridge.LinkUp {
		t.Fatal("link is up without a client certificate")
	}
	cause := st.Bridge.LastError
	if !strings.Contains(cause, "client certificate") {
		t.Errorf("the cause does not name the missing client certificate: %q", cause)
	}
	if !strings.Contains(logs.String(), "client certificate") {
		t.Errorf("the log does not say why:\n%s", logs.String())
	}
	t.Logf("cause: %s", cause)
}
