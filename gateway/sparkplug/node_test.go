package sparkplug

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/devices"
)

type sent struct {
	topic string
	p     Payload
}

// fakeLink records what the node publishes; down makes pub fail.
type fakeLink struct {
	t    *testing.T
	msgs []sent
	down bool
}

func (l *fakeLink) pub(topic string, payload []byte, qos byte, retain bool) error {
	if l.down {
		return errors.New("link down")
	}
	if qos != 0 || retain {
		l.t.Errorf("%s published at QoS %d retain %v; Sparkplug births and data are QoS 0, not retained", topic, qos, retain)
	}
	p, err := Decode(payload)
	if err != nil {
		l.t.Fatalf("%s: our own payload does not decode: %v", topic, err)
	}
	l.msgs = append(l.msgs, sent{topic, p})
	return nil
}

func newNode(t *testing.T, dir string) *Node {
	return New(Options{
		GroupID: "g", EdgeNodeID: "n", StateFile: filepath.Join(dir, "bdseq"),
		Devices: []Device{{Name: "climate", Type: "sim", Desc: devices.Description{Values: []devices.Value{
			{Name: "temperature", Type: devices.Float, Unit: "°C"},
		}}}},
		Now: func() time.Time { return time.UnixMilli(1_700_000_000_000) },
	})
}

const reading = `{"gateway":"gw","device":"climate","type":"sim","seq":1,"ts":"2026-11-22T01:02:03.456Z","values":{"temperature":21.5},"units":{"temperature":"°C"}}`

// TestBdSeqSurvivesRestart: each accepted connection and each restart
// advances bdSeq, kept in the state file, so a new session's NBIRTH never
// shares a number with an older NDEATH; 255 wraps to 0.
func TestBdSeqSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	bd := func(n *Node) int64 {
		_, p := n.Will()
		d, err := Decode(p)
		if err != nil || len(d.Metrics) != 1 || d.Metrics[0].Name != "bdSeq" || d.HasSeq {
			t.Fatalf("NDEATH %+v, %v: want one bdSeq metric and no seq", d, err)
		}
		return d.Metrics[0].Value.(int64)
	}
	if got := bd(newNode(t, dir)); got != 0 {
		t.Fatalf("first bdSeq %d", got)
	}
	n := newNode(t, dir)
	if got := bd(n); got != 1 {
		t.Fatalf("after a restart bdSeq %d, want 1", got)
	}
	// A CONNECT that was not accepted registered no Will: the retry keeps
	// the number (and writes nothing); an accepted one uses it up.
	if got := bd(n); got != 1 {
		t.Fatalf("retry after a failed CONNECT: bdSeq %d, want 1 again", got)
	}
	n.OnConnect((&fakeLink{t: t}).pub)
	if got := bd(n); got != 2 {
		t.Fatalf("after an accepted connection bdSeq %d, want 2", got)
	}
	if got := bd(newNode(t, dir)); got != 3 {
		t.Fatalf("after a restart bdSeq %d, want 3", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "bdseq"), []byte("255\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := bd(newNode(t, dir)); got != 0 {
		t.Fatalf("after 255 bdSeq %d, want 0", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "bdseq"), []byte("banana"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := bd(newNode(t, dir)); got != 0 {
		t.Fatalf("after a damaged file bdSeq %d, want 0", got)
	}
}

// TestSeqAndHistorical: seq starts at 0 with NBIRTH, rises by one per
// message and wraps after 255; readings while the link is down come after
// the next NBIRTH and DBIRTH as historical, with their own timestamps.
func TestSeqAndHistorical(t *testing.T) {
	n := newNode(t, t.TempDir())
	n.Will()
	l := &fakeLink{t: t}
	n.OnConnect(l.pub)
	for i := 0; i < 300; i++ {
		n.Reading("climate", []byte(reading))
	}
	l.down = true
	for i := 0; i < 5; i++ {
		n.Reading("climate", []byte(reading))
	}
	if n.Stored() != 5 {
		t.Fatalf("stored %d, want 5", n.Stored())
	}
	l.down = false
	n.OnConnect(l.pub)
	n.Reading("climate", []byte(reading))

	prev := -1
	wrapped := false
	var hist []bool
	births := 0
	for _, m := range l.msgs {
		seq := int(m.p.Seq)
		if m.topic == "spBv1.0/g/NBIRTH/n" {
			births++
			if seq != 0 {
				t.Fatalf("NBIRTH seq %d", seq)
			}
		} else if seq != (prev+1)%256 {
			t.Fatalf("%s seq %d after %d", m.topic, seq, prev)
		}
		if prev == 255 && seq == 0 {
			wrapped = true
		}
		prev = seq
		if births == 2 && m.topic == "spBv1.0/g/DDATA/n/climate" {
			hist = append(hist, m.p.Metrics[0].Historical)
			if ts := m.p.Metrics[0].Timestamp; ts != 1795309323456 {
				t.Errorf("metric timestamp %d, want the reading's", ts)
			}
		}
		if m.topic == "spBv1.0/g/DBIRTH/n/climate" {
			tm := m.p.Metrics[0]
			if tm.Name != "temperature" || tm.Type != Double {
				t.Errorf("DBIRTH metric %+v", tm)
			}
		}
	}
	if !wrapped {
		t.Error("seq did not wrap")
	}
	want := []bool{true, true, true, true, true, false}
	if len(hist) != len(want) {
		t.Fatalf("DDATA after the second birth: historical flags %v, want %v", hist, want)
	}
	for i := range want {
		if hist[i] != want[i] {
			t.Fatalf("historical flags %v, want %v", hist, want)
		}
	}
}

// TestDecodeRefusesGarbage: a command payload that is not protobuf is an
// error, not a panic.
func TestDecodeRefusesGarbage(t *testing.T) {
	for _, b := range [][]byte{{0xff}, {0x12, 0x05, 0x0a}, {0x12, 0x02, 0x20, 0x0b}} {
		if _, err := Decode(b); err == nil {
			t.Errorf("% x decoded without error", b)
		}
	}
	p := Payload{Timestamp: 5, Seq: 7, HasSeq: true, Metrics: []Metric{{Name: "x", Type: String, Value: "é", Properties: map[string]string{"engUnit": "m"}}}}
	d, err := Decode(p.Encode())
	if err != nil || d.Seq != 7 || d.Metrics[0].Value != "é" {
		t.Fatalf("round trip %+v %v", d, err)
	}
}

// TestDeviceDeathAndRebirth: a device going offline sends DDEATH, coming
// back DBIRTH, both numbered; while it is dead the next NBIRTH leaves out
// its DBIRTH; NCMD rebirth restarts seq at 0 with the same bdSeq; DCMD
// "state" drives the device's command.
func TestDeviceDeathAndRebirth(t *testing.T) {
	var cmds []string
	n := New(Options{
		GroupID: "g", EdgeNodeID: "n", StateFile: filepath.Join(t.TempDir(), "bdseq"),
		Devices: []Device{
			{Name: "climate", Desc: devices.Description{Values: []devices.Value{{Name: "temperature", Type: devices.Float}}}},
			{Name: "relay", Desc: devices.Description{Output: true}, Command: func(p []byte) error { cmds = append(cmds, string(p)); return nil }},
		},
	})
	n.Will()
	l := &fakeLink{t: t}
	n.OnConnect(l.pub)
	n.DeviceState("climate", false)
	n.DeviceState("climate", false) // no change, nothing sent
	rebirth := Payload{Timestamp: 1, Metrics: []Metric{{Name: "Node Control/Rebirth", Type: Boolean, Value: true}}}
	n.Command("spBv1.0/g/NCMD/n", rebirth.Encode())
	n.DeviceState("climate", true)
	on := Payload{Timestamp: 1, Metrics: []Metric{{Name: "state", Type: Boolean, Value: true}}}
	n.Command("spBv1.0/g/DCMD/n/relay", on.Encode())
	n.Command("spBv1.0/g/DCMD/n/nosuch", on.Encode())
	n.Command("spBv1.0/g/NCMD/n", []byte{0xff})

	var got []string
	for _, m := range l.msgs {
		got = append(got, fmt.Sprintf("%s:%d", strings.TrimPrefix(m.topic, "spBv1.0/g/"), m.p.Seq))
	}
	want := "NBIRTH/n:0 DBIRTH/n/climate:1 DBIRTH/n/relay:2 DDEATH/n/climate:3 NBIRTH/n:0 DBIRTH/n/relay:1 DBIRTH/n/climate:2"
	if strings.Join(got, " ") != want {
		t.Fatalf("messages:\n%s\nwant:\n%s", strings.Join(got, " "), want)
	}
	if len(cmds) != 1 || cmds[0] != "on" {
		t.Fatalf("commands %v, want [on]", cmds)
	}
	if st := n.Stats(); st.CommandsRefused != 2 {
		t.Fatalf("commands refused %d, want 2 (a DCMD for no such device, an NCMD that is not protobuf)", st.CommandsRefused)
	}
}

// TestPendingSurvivesRestart: readings made while the link is down are kept
// in the pending file, so a new process (after kill -9) sends them as
// historical after its first birth; a torn last line costs that line; the
// file is gone once they went up.
func TestPendingSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	mk := func() *Node {
		n := newNode(t, dir)
		n.o.PendingFile = filepath.Join(dir, "pending")
		return New(n.o)
	}
	n := mk()
	n.Will()
	for i := 0; i < 4; i++ {
		n.Reading("climate", []byte(reading)) // never connected: stored
	}
	n.Close() // the process dies; only the file is left
	f, err := os.OpenFile(filepath.Join(dir, "pending"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"d":"climate","p":{"ts":"2026`) // torn by the kill
	f.Close()

	n = mk()
	if n.Stored() != 4 {
		t.Fatalf("after the restart %d readings stored, want the 4 whole ones", n.Stored())
	}
	n.Will()
	l := &fakeLink{t: t}
	n.OnConnect(l.pub)
	hist := 0
	for _, m := range l.msgs {
		if m.topic == "spBv1.0/g/DDATA/n/climate" && m.p.Metrics[0].Historical {
			hist++
		}
	}
	if hist != 4 {
		t.Fatalf("%d historical DDATA after the restart, want 4", hist)
	}
	if _, err := os.Stat(filepath.Join(dir, "pending")); !os.IsNotExist(err) {
		t.Fatalf("the pending file is still there after they went up: %v", err)
	}
}
