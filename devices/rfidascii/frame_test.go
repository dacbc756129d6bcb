package rfidascii

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
	"github.com/edgegw/edgegw/devices/serialtest"
)

func feed(f Format, chunks ...[]byte) ([]devices.Reading, devices.Stats) {
	c := new(serialport.Counters)
	p := NewParser(f, c)
	var out []devices.Reading
	for _, b := range chunks {
		p.Feed(b, func(r devices.Reading) { out = append(out, r) })
	}
	return out, c.Stats()
}

func TestParser(t *testing.T) {
	// ID-12 datasheet: "STX 0 4 1 5 D 9 E 3 2 E ... CR LF ETX" style; the
	// checksum below is computed by hand: 04^15^D9^E3^2E = 05.
	id12 := "\x020415D9E32E05\r\n\x03"
	for _, tc := range []struct {
		name   string
		f      Format
		in     string
		uids   []string
		counts devices.Stats
	}{
		{"rdm6300 datasheet", RDM6300, "\x0262E3086CED08\x03", []string{"62E3086CED"}, devices.Stats{}},
		{"lower case digits", RDM6300, "\x0262e3086ced08\x03", []string{"62E3086CED"}, devices.Stats{}},
		{"bad checksum", RDM6300, "\x0262E3086CED09\x03", nil, devices.Stats{BadChecksum: 1}},
		{"short", RDM6300, "\x0262E3086CED0\x03", nil, devices.Stats{BadFrame: 1}},
		{"non-hex", RDM6300, "\x0262E3086CEZ08\x03", nil, devices.Stats{BadFrame: 1}},
		{"cut by STX", RDM6300, "\x0262E3\x0262E3086CED08\x03", []string{"62E3086CED"}, devices.Stats{BadFrame: 1}},
		{"noise around", RDM6300, "ab\xff\x0262E3086CED08\x03\r\n", []string{"62E3086CED"}, devices.Stats{NoiseBytes: 5}},
		{"id12", ID12, id12, []string{"0415D9E32E"}, devices.Stats{}},
		{"id12 without CR LF", ID12, "\x020415D9E32E05\x03", nil, devices.Stats{BadFrame: 1}},
		{"rdm6300 given id12 frame", RDM6300, id12, nil, devices.Stats{BadFrame: 1, NoiseBytes: 2}},
		{"id12 with LF CR", ID12, "\x020415D9E32E05\n\r\x03", nil, devices.Stats{BadFrame: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Whole, and one byte at a time: the same result.
			for _, split := range []bool{false, true} {
				var chunks [][]byte
				if split {
					for i := range len(tc.in) {
						chunks = append(chunks, []byte{tc.in[i]})
					}
				} else {
					chunks = [][]byte{[]byte(tc.in)}
				}
				got, st := feed(tc.f, chunks...)
				var uids []string
				for _, r := range got {
					uids = append(uids, r.UID)
				}
				if fmt.Sprint(uids) != fmt.Sprint(tc.uids) {
					t.Errorf("split=%v uids = %v, want %v", split, uids, tc.uids)
				}
				if fmt.Sprint(st) != fmt.Sprint(tc.counts) {
					t.Errorf("split=%v counters = %v, want %v", split, st, tc.counts)
				}
			}
		})
	}
}

// TestID12OnPTY plays an ID-12 on a pty: 30 tags with noise and bad frames.
func TestID12OnPTY(t *testing.T) {
	for _, typ := range []string{"id12", "id20"} {
		t.Run(typ, func(t *testing.T) {
			f := ID12
			if typ == "id20" {
				f = ID20
			}
			rng := rand.New(rand.NewPCG(12, 20))
			wr := rand.New(rand.NewPCG(1, 1))
			var stream []byte
			var want []string
			for i := range 30 {
				uid := fmt.Sprintf("%010X", rng.Uint64()&0xFFFFFFFFFF)
				fr, _ := f.Encode(uid)
				if i%5 == 4 {
					fr[11] = map[bool]byte{true: '1', false: '0'}[fr[11] == '0'] // bad checksum
				} else {
					want = append(want, uid)
				}
				stream = append(stream, fr...)
				stream = append(stream, "\xff\x00 junk"...) // 7 noise bytes
			}
			var wantR []devices.Reading
			for _, u := range want {
				wantR = append(wantR, devices.Reading{UID: u})
			}
			golden := serialtest.MakeGolden(wantR, devices.Stats{BadChecksum: 6, NoiseBytes: 30 * 7})
			serialtest.CheckGolden(t, "testdata/"+typ+"/stream.bin", stream)
			serialtest.CheckGolden(t, "testdata/"+typ+"/expected.json", golden.JSON())
			path, dev := serialtest.NewPTY(t)
			drv, _ := devices.Lookup(typ)
			d, err := drv.New(devices.Env{Name: "gate"}, serialtest.Decoder(fmt.Sprintf("port = %q\ndedupe = \"0s\"", path)))
			if err != nil {
				t.Fatal(err)
			}
			run := serialtest.Start(t, d)
			go serialtest.WriteSplit(dev, stream, wr)
			got := run.Take(t, len(want), 5*time.Second)
			for i, r := range got {
				if r.UID != want[i] {
					t.Fatalf("reading %d uid %s, want %s", i, r.UID, want[i])
				}
			}
			c := d.(devices.Counter)
			deadline := time.Now().Add(5 * time.Second)
			for c.Counters()[NoiseBytes] < 30*7 && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond) // polling a counter, bounded
			}
			if st := c.Counters(); st[BadChecksum] != 6 || st[NoiseBytes] != 30*7 || st[BadFrame] != 0 {
				t.Fatalf("counters %v", st)
			}
		})
	}
}

// FuzzParser: any bytes, any split: never panics, and every reading comes
// from a frame whose checksum is right (re-encoding the UID reproduces a
// frame that occurs in the input).
func FuzzParser(f *testing.F) {
	f.Add([]byte("\x0262E3086CED08\x03"), uint8(3), false)
	f.Add([]byte("\x020415D9E32E05\r\n\x03"), uint8(1), true)
	f.Add([]byte("noise\x0262E3\x0262E3086CED08\x03\x02"), uint8(5), false)
	f.Add([]byte("\x0262E3086CED09\x03"), uint8(7), false)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, id bool) {
		fm := RDM6300
		if id {
			fm = ID12
		}
		c := new(serialport.Counters)
		p := NewParser(fm, c)
		n := int(chunk%16) + 1
		for i := 0; i < len(data); i += n {
			p.Feed(data[i:min(i+n, len(data))], func(r devices.Reading) {
				if len(r.UID) != 10 || strings.ToUpper(r.UID) != r.UID {
					t.Fatalf("bad uid %q", r.UID)
				}
				if _, err := hex.DecodeString(r.UID); err != nil {
					t.Fatalf("non-hex uid %q", r.UID)
				}
				fr, _ := fm.Encode(r.UID)
				body := strings.ToUpper(string(fr[1:13]))
				if !strings.Contains(strings.ToUpper(string(data)), body) {
					t.Fatalf("reading %q not backed by a valid frame in %q", r.UID, data)
				}
			})
		}
	})
}
