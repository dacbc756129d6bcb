package pn532_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/pn532"
	"github.com/edgegw/edgegw/devices/pn532/pn532sim"
	"github.com/edgegw/edgegw/devices/serialport"
	"github.com/edgegw/edgegw/devices/serialtest"
)

// Frames as printed in UM0701 and seen on the wire.
func TestEncodeKnownFrames(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"SAMConfiguration", pn532.Command(pn532.CmdSAMConfiguration, 0x01, 0x14, 0x01), "00 00 FF 05 FB D4 14 01 14 01 02 00"},
		{"GetFirmwareVersion", pn532.Command(pn532.CmdGetFirmwareVersion), "00 00 FF 02 FE D4 02 2A 00"},
		{"InListPassiveTarget", pn532.Command(pn532.CmdInListPassiveTarget, 0x01, 0x00), "00 00 FF 04 FC D4 4A 01 00 E1 00"},
		{"firmware response", pn532.Encode([]byte{0xD5, 0x03, 0x32, 0x01, 0x06, 0x07}), "00 00 FF 06 FA D5 03 32 01 06 07 E8 00"},
	} {
		if got := fmt.Sprintf("% X", tc.got); got != tc.want {
			t.Errorf("%s = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestDecoder(t *testing.T) {
	classic := pn532.Encode([]byte{0xD5, 0x4B, 0x01, 0x01, 0x00, 0x04, 0x08, 0x04, 0xDE, 0xAD, 0xBE, 0xEF})
	badDCS := bytes.Clone(classic)
	badDCS[len(badDCS)-2] ^= 0x10
	badLCS := bytes.Clone(classic)
	badLCS[4]++
	ext := pn532.Encode(append([]byte{0xD5, 0x41, 0x00}, bytes.Repeat([]byte{0xAB}, 300)...))
	cat := func(b ...[]byte) []byte { return bytes.Join(b, nil) }
	for _, tc := range []struct {
		name   string
		in     []byte
		want   []string
		counts devices.Stats
	}{
		{"ack then response", cat(pn532.ACK, classic), []string{"ACK", "frame D5 4B 01 01 00 04 08 04 DE AD BE EF"}, devices.Stats{}},
		{"nack", pn532.NACK, []string{"NACK"}, devices.Stats{}},
		{"error frame", pn532.ErrorFrame, []string{"error frame"}, devices.Stats{}},
		{"bad dcs", cat(badDCS, pn532.ACK), []string{"ACK"}, devices.Stats{pn532.BadDCS: 1}},
		{"bad lcs", cat(badLCS, pn532.ACK), []string{"ACK"}, devices.Stats{pn532.BadLCS: 1}},
		{"noise and wake-up bytes", cat([]byte{0x55, 0x55, 0x13, 0x00}, pn532.ACK), []string{"ACK"}, devices.Stats{}},
		{"extended frame", ext, []string{fmt.Sprintf("frame D5 41 00 %s", strings.Repeat("AB ", 299)+"AB")}, devices.Stats{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{len(tc.in), 1, 3} {
				c := new(serialport.Counters)
				d := pn532.Decoder{Counts: c}
				var got []string
				for i := 0; i < len(tc.in); i += step {
					d.Feed(tc.in[i:min(i+step, len(tc.in))])
					for f, ok := d.Next(); ok; f, ok = d.Next() {
						got = append(got, f.String())
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("step %d: got %q, want %q", step, got, tc.want)
				}
				if fmt.Sprint(c.Stats()) != fmt.Sprint(tc.counts) {
					t.Errorf("step %d: counters %v, want %v", step, c.Stats(), tc.counts)
				}
			}
		})
	}
}

func TestParseInList(t *testing.T) {
	for _, tc := range []struct {
		data    []byte
		uid     string
		found   bool
		wantErr bool
	}{
		{[]byte{0xD5, 0x4B, 0x01, 0x01, 0x00, 0x04, 0x08, 0x04, 0xDE, 0xAD, 0xBE, 0xEF}, "DEADBEEF", true, false},
		{[]byte{0xD5, 0x4B, 0x01, 0x01, 0x00, 0x44, 0x00, 0x07, 0x04, 0xA2, 0x24, 0x3A, 0x6B, 0x5C, 0x80}, "04A2243A6B5C80", true, false},
		// ISO 14443-4 card: ATS follows the UID and is ignored.
		{[]byte{0xD5, 0x4B, 0x01, 0x01, 0x03, 0x44, 0x20, 0x07, 0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x06, 0x75, 0x77, 0x81, 0x02, 0x80}, "04112233445566", true, false},
		{[]byte{0xD5, 0x4B, 0x00}, "", false, false},
		{[]byte{0xD5, 0x4B, 0x01, 0x01, 0x00, 0x04, 0x08, 0x05, 1, 2, 3, 4, 5}, "", false, true},
		{[]byte{0xD5, 0x4B, 0x01, 0x01, 0x00, 0x04, 0x08, 0x07, 1, 2, 3}, "", false, true},
		{[]byte{0xD5, 0x15}, "", false, true},
	} {
		tg, found, err := pn532.ParseInList(tc.data)
		if (err != nil) != tc.wantErr || found != tc.found || (found && tg.UIDHex() != tc.uid) {
			t.Errorf("% X: uid %s found %v err %v", tc.data, tg.UIDHex(), found, err)
		}
	}
}

func newReader(t *testing.T, snippet string) *pn532.Reader {
	t.Helper()
	drv, ok := devices.Lookup(pn532.Type)
	if !ok {
		t.Fatal("pn532 not registered")
	}
	d, err := drv.New(devices.Env{Name: "nfc"}, serialtest.Decoder(snippet))
	if err != nil {
		t.Fatal(err)
	}
	return d.(*pn532.Reader)
}

func serve(t *testing.T, sim *pn532sim.Sim, closeDev func()) {
	done := make(chan struct{})
	go func() { defer close(done); sim.Serve() }()
	t.Cleanup(func() { closeDev(); <-done })
}

// TestReaderOnPTY plays a PN532 on a pty: MIFARE Classic (4-byte UID),
// NTAG213 (7-byte) and a triple-size (10-byte) UID, with noise, a corrupt
// response, an error frame, a silent poll and an empty field in between.
func TestReaderOnPTY(t *testing.T) {
	path, dev := serialtest.NewPTY(t)
	sim := pn532sim.New(dev)
	serve(t, sim, func() { dev.Close() })
	classic := &pn532.Target{SensRes: 0x0004, SelRes: 0x08, UID: []byte{0xDE, 0xAD, 0xBE, 0xEF}}
	ntag := &pn532.Target{SensRes: 0x0044, SelRes: 0x00, UID: []byte{0x04, 0xA2, 0x24, 0x3A, 0x6B, 0x5C, 0x80}}
	triple := &pn532.Target{SensRes: 0x0084, SelRes: 0x20, UID: []byte{0x08, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09}}
	sim.Present(
		pn532sim.Event{},
		pn532sim.Event{Tag: classic, Noise: []byte{0xFF, 0x00, 0x13}},
		pn532sim.Event{Tag: ntag, Corrupt: true},
		pn532sim.Event{Tag: ntag},
		pn532sim.Event{Error: true},
		pn532sim.Event{Silent: true},
		pn532sim.Event{Tag: triple},
		pn532sim.Event{Tag: triple}, // still held: suppressed by dedupe
	)
	r := newReader(t, fmt.Sprintf("port = %q\nread_timeout = \"150ms\"\npoll_interval = \"10ms\"\ndedupe = \"1h\"", path))
	run := serialtest.Start(t, r)
	got := run.Take(t, 3, 10*time.Second)
	select {
	case <-sim.Polled(): // every queued event has been played
	case <-time.After(10 * time.Second):
		t.Fatal("simulator never drained its events")
	}
	want := []struct{ uid, atqa, sak string }{
		{"DEADBEEF", "0004", "08"},
		{"04A2243A6B5C80", "0044", "00"},
		{"08010203040506070809", "0084", "20"},
	}
	for i, w := range want {
		g := got[i]
		if g.UID != w.uid || len(g.Fields) != 2 || g.Fields[0].Value != w.atqa || g.Fields[1].Value != w.sak {
			t.Errorf("reading %d = %+v, want %+v", i, g, w)
		}
	}
	st := r.Counters()
	for k, v := range map[string]uint64{pn532.BadDCS: 1, "error_frames": 1, "timeouts": 2, "duplicates_suppressed": 1} {
		if st[k] != v {
			t.Errorf("counter %s = %d, want %d (all: %v)", k, st[k], v, st)
		}
	}
	cmds := sim.Commands()
	if len(cmds) < 3 || cmds[0][1] != pn532.CmdSAMConfiguration || cmds[1][1] != pn532.CmdGetFirmwareVersion || cmds[2][1] != pn532.CmdRFConfiguration {
		t.Errorf("start-up commands % X", cmds[:min(3, len(cmds))])
	}
	if err := run.Stop(t); err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
}

// TestSilentPN532 returns an error naming the port and what to check.
func TestSilentPN532(t *testing.T) {
	path, _ := serialtest.NewPTY(t)
	r := newReader(t, fmt.Sprintf("port = %q\nread_timeout = \"50ms\"", path))
	err := serialtest.Start(t, r).Wait(t, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "SAMConfiguration") {
		t.Fatalf("Run = %v", err)
	}
}

func TestUnplug(t *testing.T) {
	plug := serialtest.NewPlug(t)
	sim := pn532sim.New(plug.Dev())
	serve(t, sim, func() { plug.Unplug() })
	r := newReader(t, fmt.Sprintf("port = %q\npoll_interval = \"10ms\"", plug.Path))
	run := serialtest.Start(t, r)
	sim.Present(pn532sim.Event{Tag: &pn532.Target{SensRes: 4, SelRes: 8, UID: []byte{1, 2, 3, 4}}})
	if got := run.Take(t, 1, 5*time.Second); got[0].UID != "01020304" {
		t.Fatalf("got %+v", got)
	}
	plug.Unplug()
	if err := run.Wait(t, 5*time.Second); err == nil || !strings.Contains(err.Error(), plug.Path) {
		t.Fatalf("Run after unplug = %v", err)
	}
	sim2 := pn532sim.New(plug.Replug())
	serve(t, sim2, func() { plug.Unplug() })
	sim2.Present(pn532sim.Event{Tag: &pn532.Target{SensRes: 4, SelRes: 8, UID: []byte{5, 6, 7, 8}}})
	if got := serialtest.Start(t, r).Take(t, 1, 5*time.Second); got[0].UID != "05060708" {
		t.Fatalf("after replug got %+v", got)
	}
}

func TestBadConfig(t *testing.T) {
	drv, _ := devices.Lookup(pn532.Type)
	for _, tc := range []struct{ snippet, want string }{
		{`port = "/dev/ttyS0"` + "\nbaud = 115201", "baud: 115201 is not a standard rate"},
		{`port = "/dev/ttyS0"` + "\npoll_interval = \"1ms\"", "poll_interval: 1ms is too short"},
		{`port = "/dev/ttyS0"` + "\npoll_interval = \"soon\"", `"soon" is not a duration`},
	} {
		_, err := drv.New(devices.Env{}, serialtest.Decoder(tc.snippet))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.snippet, err, tc.want)
		}
	}
}

// FuzzDecoder: arbitrary bytes never panic, and every information frame the
// decoder returns is backed by a correctly checksummed frame in the input.
func FuzzDecoder(f *testing.F) {
	f.Add(append(bytes.Clone(pn532.ACK), pn532.Encode([]byte{0xD5, 0x4B, 0x01, 0x01, 0x00, 0x04, 0x08, 0x04, 0xDE, 0xAD, 0xBE, 0xEF})...))
	f.Add(pn532.ErrorFrame)
	f.Add(pn532.NACK)
	f.Add(pn532.Encode([]byte{0xD5, 0x03, 0x32, 0x01, 0x06, 0x07}))
	f.Add(pn532.Encode(append([]byte{0xD5, 0x41, 0x00}, bytes.Repeat([]byte{0xAB}, 300)...)))
	f.Add([]byte{0x00, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		d := pn532.Decoder{Counts: new(serialport.Counters)}
		for i := 0; i < len(in); i += 7 {
			d.Feed(in[i:min(i+7, len(in))])
			for fr, ok := d.Next(); ok; fr, ok = d.Next() {
				if fr.Kind != pn532.KindInfo {
					continue
				}
				enc := pn532.Encode(fr.Data)
				if !bytes.Contains(in, enc[2:len(enc)-1]) { // start code … DCS
					t.Fatalf("frame % X not in input", fr.Data)
				}
				if tg, found, err := pn532.ParseInList(fr.Data); err == nil && found {
					if n := len(tg.UID); n != 4 && n != 7 && n != 10 {
						t.Fatalf("uid length %d", n)
					}
				}
			}
		}
	})
}
