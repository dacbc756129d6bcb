package rdm6300_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/rdm6300"
	"github.com/edgegw/edgegw/devices/rfidascii"
	"github.com/edgegw/edgegw/devices/serialport"
	"github.com/edgegw/edgegw/devices/serialtest"
)

// datasheetFrame is the RDM630/RDM6300 datasheet's example: data 62 E3 08 6C
// ED, checksum 62^E3^08^6C^ED = 08.
var datasheetFrame = []byte{0x02, '6', '2', 'E', '3', '0', '8', '6', 'C', 'E', 'D', '0', '8', 0x03}

func newDevice(t *testing.T, snippet string) devices.Device {
	t.Helper()
	drv, ok := devices.Lookup(rdm6300.Type)
	if !ok {
		t.Fatal("rdm6300 not registered")
	}
	dev, err := drv.New(devices.Env{Name: "door"}, serialtest.Decoder(snippet))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return dev
}

func TestFrameMatchesDatasheet(t *testing.T) {
	f, err := rdm6300.Frame("62e3086ced")
	if err != nil {
		t.Fatal(err)
	}
	if string(f) != string(datasheetFrame) {
		t.Fatalf("Frame = % X, datasheet % X", f, datasheetFrame)
	}
}

// buildStream makes the golden stream: the datasheet frame, 40 random tags,
// 5 bad checksums, 3 frames cut short by the next STX, 2 with a non-hex
// character, 1 overlong run, and noise (never STX/ETX) between frames.
func buildStream(rng *rand.Rand) ([]byte, serialtest.Golden) {
	var out []byte
	var want []devices.Reading
	noise := uint64(0)
	addNoise := func() {
		n := rng.IntN(9)
		for range n {
			b := byte(rng.IntN(256))
			if b == rfidascii.STX || b == rfidascii.ETX {
				b = 0xFF
			}
			out = append(out, b)
		}
		noise += uint64(n)
	}
	good := func(uid string) {
		f, _ := rdm6300.Frame(uid)
		out = append(out, f...)
		want = append(want, devices.Reading{UID: strings.ToUpper(uid)})
		addNoise()
	}
	good("62E3086CED")
	addNoise()
	var bad struct{ sum, frame int }
	for i := range 40 {
		good(fmt.Sprintf("%010X", rng.Uint64()&0xFFFFFFFFFF))
		switch i % 8 {
		case 1: // checksum off by one bit
			f, _ := rdm6300.Frame(fmt.Sprintf("%010X", rng.Uint64()&0xFFFFFFFFFF))
			f[12] = flipHex(f[12])
			out = append(out, f...)
			bad.sum++
		case 3: // cut short: the reader was reset mid-frame
			f, _ := rdm6300.Frame("0123456789")
			out = append(out, f[:7]...)
			bad.frame++
			continue // the next frame's STX follows at once
		case 5: // a non-hex character where a digit belongs
			if bad.frame < 6 {
				f, _ := rdm6300.Frame("0123456789")
				f[4] = 'G'
				out = append(out, f...)
				bad.frame++
			}
		case 7:
			if i == 7 { // overlong: 13th body byte ends it, 7 more are noise
				out = append(out, rfidascii.STX)
				out = append(out, "0123456789ABCDEF0123"...)
				bad.frame++
				noise += 7
			}
		}
		addNoise()
	}
	g := serialtest.MakeGolden(want, devices.Stats{
		rfidascii.BadChecksum: uint64(bad.sum),
		rfidascii.BadFrame:    uint64(bad.frame),
		rfidascii.NoiseBytes:  noise,
	})
	return out, g
}

// flipHex changes a hex digit into another hex digit.
func flipHex(b byte) byte {
	if b == 'F' {
		return 'E'
	}
	return 'F'
}

// TestGoldenStreamOnPTY plays testdata/stream.bin on a real pty, split at
// random points, and checks every reading and every counter against
// testdata/expected.json (written from the stream's construction, not from
// the parser, with -update).
func TestGoldenStreamOnPTY(t *testing.T) {
	stream, want := buildStream(rand.New(rand.NewPCG(6300, 1)))
	serialtest.CheckGolden(t, "testdata/stream.bin", stream)
	serialtest.CheckGolden(t, "testdata/expected.json", want.JSON())

	path, dev := serialtest.NewPTY(t)
	d := newDevice(t, fmt.Sprintf("port = %q\ndedupe = \"0s\"\n", path))
	run := serialtest.Start(t, d)
	go serialtest.WriteSplit(dev, stream, rand.New(rand.NewPCG(1, 2)))
	got := run.Take(t, len(want.Readings), 10*time.Second)
	// Counters settle once the trailing noise is read: wait for them, bounded.
	c := d.(devices.Counter)
	deadline := time.Now().Add(5 * time.Second)
	for c.Counters()[rfidascii.NoiseBytes] < want.Counters[rfidascii.NoiseBytes] && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling a counter, bounded by deadline
	}
	g := serialtest.MakeGolden(got, c.Counters())
	if string(g.JSON()) != string(want.JSON()) {
		t.Fatalf("got\n%s\nwant\n%s", g.JSON(), want.JSON())
	}
	if err := run.Stop(t); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
}

func TestDedupeHeldTag(t *testing.T) {
	path, dev := serialtest.NewPTY(t)
	d := newDevice(t, fmt.Sprintf("port = %q\ndedupe = \"1h\"\n", path))
	run := serialtest.Start(t, d)
	a, _ := rdm6300.Frame("0A0B0C0D0E")
	b, _ := rdm6300.Frame("1122334455")
	var s []byte
	for range 5 {
		s = append(s, a...) // tag held: the reader repeats its frame
	}
	s = append(s, b...)
	if _, err := dev.Write(s); err != nil {
		t.Fatal(err)
	}
	got := run.Take(t, 2, 5*time.Second)
	if got[0].UID != "0A0B0C0D0E" || got[1].UID != "1122334455" {
		t.Fatalf("got %+v", got)
	}
	if n := d.(devices.Counter).Counters()["duplicates_suppressed"]; n != 4 {
		t.Fatalf("duplicates_suppressed = %d, want 4", n)
	}
}

// TestUnplugAndResume: the by-id style symlink's pty is closed (USB
// unplugged): Run returns an error naming the port; the pty is recreated
// under the same path and Run, called again as the supervisor does, reads
// the next tag.
func TestUnplugAndResume(t *testing.T) {
	plug := serialtest.NewPlug(t)
	d := newDevice(t, fmt.Sprintf("port = %q\n", plug.Path))
	run := serialtest.Start(t, d)
	f1, _ := rdm6300.Frame("0000000001")
	if _, err := plug.Dev().Write(f1); err != nil {
		t.Fatal(err)
	}
	if got := run.Take(t, 1, 5*time.Second); got[0].UID != "0000000001" {
		t.Fatalf("got %+v", got)
	}
	plug.Unplug()
	err := run.Wait(t, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), plug.Path) {
		t.Fatalf("Run after unplug = %v, want an error naming %s", err, plug.Path)
	}
	// While unplugged, Run fails at once, naming the port.
	if err := serialtest.Start(t, d).Wait(t, 5*time.Second); err == nil || !strings.Contains(err.Error(), plug.Path) {
		t.Fatalf("Run while unplugged = %v", err)
	}
	dev := plug.Replug()
	run2 := serialtest.Start(t, d)
	f2, _ := rdm6300.Frame("0000000002")
	if _, err := dev.Write(f2); err != nil {
		t.Fatal(err)
	}
	if got := run2.Take(t, 1, 5*time.Second); got[0].UID != "0000000002" {
		t.Fatalf("after replug got %+v", got)
	}
	if n := d.(devices.Counter).Counters()["open_failures"]; n != 1 {
		t.Errorf("open_failures = %d, want 1", n)
	}
	if err := run2.Stop(t); err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	drv, _ := devices.Lookup(rdm6300.Type)
	for _, tc := range []struct{ snippet, want string }{
		{`port = "/dev/ttyS0"` + "\nbaud = 9601", "baud: 9601 is not a standard rate (one of 1200,"},
		{`port = "/dev/ttyS0"` + "\nparity = \"evn\"", `parity: "evn" is not allowed (one of none, even, odd, mark, space)`},
		{`port = "/dev/ttyS0"` + "\nstop_bits = 3", "stop_bits: 3 is not allowed (one of 1, 1.5, 2)"},
		{`port = "/dev/ttyS0"` + "\nstop_bits = 1.5", "stop_bits: 1.5 needs data_bits = 5"},
		{`port = "/dev/ttyS0"` + "\ndata_bits = 9", "data_bits: 9 is not allowed"},
		{`baud = 9600`, "port: missing"},
		{`port = "/dev/ttyS0"` + "\ndedupe = \"2 seconds\"", `"2 seconds" is not a duration`},
		{`port = "/dev/ttyS0"` + "\nbuad = 9600", "buad: unknown key"},
	} {
		_, err := drv.New(devices.Env{Name: "door"}, serialtest.Decoder(tc.snippet))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to contain %q", tc.snippet, err, tc.want)
		}
	}
}

func TestDefaults(t *testing.T) {
	d := newDevice(t, `port = "/dev/serial/by-id/usb-x"`)
	s := d.(*serialport.Stream)
	if s.Port.Baud != 9600 || s.Port.DataBits != 8 || s.Port.Parity != "none" || s.Port.StopBits != 1 {
		t.Fatalf("defaults = %+v, want 9600 8N1", s.Port)
	}
	if s.Dedupe.Window != rfidascii.DefaultDedupe {
		t.Fatalf("dedupe = %s", s.Dedupe.Window)
	}
	if _, err := os.Stat("testdata/config.toml"); err != nil {
		t.Fatalf("testdata/config.toml: %v", err)
	}
}
