package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/mosquittotest"
)

// deadLetterCLI runs `edgegw deadletter ARGS -c cfg` and returns stdout.
func deadLetterCLI(t testing.TB, bin, cfg string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, append([]string{"deadletter", "-c", cfg}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("edgegw deadletter %v: %v\n%s%s", args, err, out.String(), errb.String())
	}
	return out.String()
}

// deadLetterIDs reads `edgegw deadletter list` into reason code -> ids.
func deadLetterIDs(list string) map[string][]string {
	ids := map[string][]string{}
	for _, l := range strings.Split(list, "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && strings.HasPrefix(f[3], "0x") {
			ids[f[3]] = append(ids[f[3]], f[0])
		}
	}
	return ids
}

// TestDeadLetters is acceptance 2 of the cloud-limits issue, on the real
// binary and a real Mosquitto as MQTT 5: an ACL that denies one topic (the
// broker answers PUBACK 0x87) and a max_packet_size smaller than one
// message (announced in CONNACK; the gateway does not send it). Both
// messages land in the dead-letter store, everything behind them arrives,
// the store survives a restart, and after the ACL is fixed the refused
// message is replayed while the gateway runs. (Mosquitto 2.0.11 drops a TLS
// connection right after it sends PUBACK 0x87 — mosquitto_pub sees the
// same — so the denial also costs one reconnect, counted as a flap.)
func TestDeadLetters(t *testing.T) {
	f := pki(t)
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	writeACL := func(allowB bool) {
		rules := "user gw-01\ntopic write sites/s1/gw-01/readings/a\ntopic write sites/s1/gw-01/readings/c\n"
		if allowB {
			rules += "topic write sites/s1/gw-01/readings/b\n"
		}
		rules += "\nuser sub\ntopic readwrite #\n"
		if err := os.WriteFile(acl, []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeACL(false)
	up := mosquittotest.Start(t, mosquittotest.Options{CAFile: f.CA.Cert, CertFile: f.Server.Cert, KeyFile: f.Server.Key,
		Extra: fmt.Sprintf("acl_file %s\nmax_packet_size 2000\n", acl)})
	sub := subscribeV5(t, f, up.Addr())

	brokerAddr := fmt.Sprintf("127.0.0.1:%d", mosquittotest.FreePort(t))
	cfgText := cloudConfig(t, f, filepath.Join(dir, "data"), brokerAddr, up.Addr(), "5", 1, "")
	gw := newGwProc(t, cfgText, brokerAddr)
	gw.start()
	defer gw.stop()

	pub := localClient(brokerAddr, "pub-dl", true, nil)
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local publisher connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	big := payloadOf("readings/a", 2) + " " + strings.Repeat("x", 3000)
	for _, m := range []struct{ topic, payload string }{
		{"readings/a", payloadOf("readings/a", 1)},
		{"readings/b", payloadOf("readings/b", 1)}, // the ACL denies it
		{"readings/a", big},                        // over max_packet_size
		{"readings/a", payloadOf("readings/a", 3)},
		{"readings/c", payloadOf("readings/c", 1)},
	} {
		if tok := pub.Publish(m.topic, 1, false, m.payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", m.topic, tok.Error())
		}
	}
	behind := map[string][]uint64{"readings/a": {1, 3}, "readings/c": {1}}
	if !sub.waitFor(30*time.Second, func(got map[string][]uint64) bool { return haveAll(got, behind) }) {
		t.Fatalf("the messages behind the refused ones did not arrive: %v", sub.snapshot())
	}
	cfg := gw.cfg
	var ids map[string][]string
	waitUntil(t, 10*time.Second, "two dead letters", func() bool {
		ids = deadLetterIDs(deadLetterCLI(t, gw.bin, cfg, "list"))
		return len(ids["0x87"]) == 1 && len(ids["0x95"]) == 1
	})
	if got := sub.snapshot(); len(got["readings/b"]) != 0 || !equalSeqs(got["readings/a"], []uint64{1, 3}) {
		t.Fatalf("arrived %v, want a 1 and 3, c 1, no b", got)
	}
	if !strings.Contains(gw.logs.String(), "dead-letter store") {
		t.Errorf("no log line about the dead-letter store:\n%s", tail(gw.logs.String(), 20))
	}

	// A restart keeps them.
	gw.stop()
	gw.start()
	if got := deadLetterIDs(deadLetterCLI(t, gw.bin, cfg, "list")); len(got["0x87"]) != 1 || len(got["0x95"]) != 1 {
		t.Fatalf("after a restart the dead letters are %v, want one 0x87 and one 0x95", got)
	}

	// Fix the ACL; replay the refused message while the gateway runs.
	writeACL(true)
	if err := up.Reload(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "mosquitto to reload", func() bool { return strings.Contains(up.Log(), "Reloading config") })
	out := deadLetterCLI(t, gw.bin, cfg, "replay", ids["0x87"][0])
	if !strings.Contains(out, "replayed 1") {
		t.Fatalf("replay said %q", out)
	}
	if !sub.waitFor(30*time.Second, func(got map[string][]uint64) bool { return len(got["readings/b"]) > 0 }) {
		t.Fatalf("the replayed message did not arrive")
	}
	if got := sub.snapshot()["readings/b"]; !equalSeqs(got, []uint64{1}) {
		t.Errorf("readings/b arrived as %v, want [1]", got)
	}
	if got := deadLetterIDs(deadLetterCLI(t, gw.bin, cfg, "list")); len(got["0x87"]) != 0 || len(got["0x95"]) != 1 {
		t.Errorf("after the replay the dead letters are %v, want the 0x95 one only", got)
	}
	// Drop the one that can never go.
	if out := deadLetterCLI(t, gw.bin, cfg, "drop", "all"); !strings.Contains(out, "dropped 1") {
		t.Errorf("drop said %q", out)
	}
	if out := deadLetterCLI(t, gw.bin, cfg, "list"); !strings.Contains(out, "no dead letters") {
		t.Errorf("after drop all: %q", out)
	}
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
