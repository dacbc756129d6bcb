package plantower

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
	"github.com/edgegw/edgegw/devices/serialtest"
)

// indoor is a frame as a PMS5003 sends it in a living room: CF=1 PM 5/8/9,
// atmospheric 5/8/9, counts 891/268/60/6/2/2, reserved word 0x9700 (version
// 0x97, error code 0).
var indoor = [13]uint16{5, 8, 9, 5, 8, 9, 891, 268, 60, 6, 2, 2, 0x9700}

func TestEncodeIndoorFrame(t *testing.T) {
	got := fmt.Sprintf("% X", Encode(indoor))
	want := "42 4D 00 1C 00 05 00 08 00 09 00 05 00 08 00 09 03 7B 01 0C 00 3C 00 06 00 02 00 02 97 00 02 3F" // checksum 0x023F summed by hand
	if got != want {
		t.Fatalf("frame %s, want %s", got, want)
	}
}

func readingOf(w [13]uint16) devices.Reading {
	r := devices.Reading{}
	for k, n := range fieldNames {
		u := UnitMass
		if k >= 6 {
			u = UnitCount
		}
		r.Fields = append(r.Fields, devices.Field{Name: n, Value: int64(w[k]), Unit: u})
	}
	return r
}

// buildStream: 30 frames with drifting values, noise (never 0x42) between
// them, 4 frames with a wrong checksum, 3 with a wrong length field.
func buildStream(rng *rand.Rand) ([]byte, serialtest.Golden) {
	var out []byte
	var want []devices.Reading
	var badSum, badLen, noise uint64
	for i := range 30 {
		w := indoor
		for k := range 12 {
			w[k] += uint16(rng.IntN(20))
		}
		out = append(out, Encode(w)...)
		want = append(want, readingOf(w))
		n := rng.IntN(6)
		for range n {
			b := byte(rng.IntN(256))
			if b == 0x42 {
				b = 0x41
			}
			out = append(out, b)
		}
		noise += uint64(n)
		switch i % 8 {
		case 2:
			f := Encode(w)
			f[10]++ // a bit flipped on the line
			out = append(out, f...)
			badSum++
			noise += 30
		case 5:
			if badLen < 3 {
				f := Encode(w)
				binary.BigEndian.PutUint16(f[2:], 20) // PMS1003-style length
				out = append(out, f...)
				badLen++
				noise += 30
			}
		}
	}
	return out, serialtest.MakeGolden(want, devices.Stats{BadChecksum: badSum, BadLength: badLen, NoiseBytes: noise})
}

func TestParserSplits(t *testing.T) {
	stream, want := buildStream(rand.New(rand.NewPCG(5003, 1)))
	for _, step := range []int{1, 7, 31, 33, len(stream)} {
		c := new(serialport.Counters)
		p := &Parser{Counts: c}
		var got []devices.Reading
		for i := 0; i < len(stream); i += step {
			p.Feed(stream[i:min(i+step, len(stream))], func(r devices.Reading) { got = append(got, r) })
		}
		if g := serialtest.MakeGolden(got, c.Stats()).JSON(); !bytes.Equal(g, want.JSON()) {
			t.Fatalf("step %d:\n%s\nwant\n%s", step, g, want.JSON())
		}
	}
}

func TestGoldenStreamOnPTY(t *testing.T) {
	for _, typ := range []string{"pms5003", "pms7003"} {
		t.Run(typ, func(t *testing.T) {
			stream, want := buildStream(rand.New(rand.NewPCG(5003, 1)))
			serialtest.CheckGolden(t, "testdata/stream.bin", stream)
			serialtest.CheckGolden(t, "testdata/expected.json", want.JSON())
			path, dev := serialtest.NewPTY(t)
			drv, _ := devices.Lookup(typ)
			d, err := drv.New(devices.Env{Name: "air"}, serialtest.Decoder(fmt.Sprintf("port = %q", path)))
			if err != nil {
				t.Fatal(err)
			}
			run := serialtest.Start(t, d)
			go serialtest.WriteSplit(dev, stream, rand.New(rand.NewPCG(3, 4)))
			got := run.Take(t, len(want.Readings), 10*time.Second)
			c := d.(devices.Counter)
			deadline := time.Now().Add(5 * time.Second)
			for c.Counters()[NoiseBytes] < want.Counters[NoiseBytes] && time.Now().Before(deadline) {
				time.Sleep(2 * time.Millisecond) // polling a counter, bounded
			}
			if g := serialtest.MakeGolden(got, c.Counters()).JSON(); !bytes.Equal(g, want.JSON()) {
				t.Fatalf("got\n%s\nwant\n%s", g, want.JSON())
			}
			if err := run.Stop(t); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestUnplug(t *testing.T) {
	plug := serialtest.NewPlug(t)
	drv, _ := devices.Lookup("pms5003")
	d, err := drv.New(devices.Env{}, serialtest.Decoder(fmt.Sprintf("port = %q", plug.Path)))
	if err != nil {
		t.Fatal(err)
	}
	run := serialtest.Start(t, d)
	plug.Dev().Write(Encode(indoor))
	run.Take(t, 1, 5*time.Second)
	plug.Unplug()
	if err := run.Wait(t, 5*time.Second); err == nil || !strings.Contains(err.Error(), plug.Path) {
		t.Fatalf("Run after unplug = %v", err)
	}
	dev := plug.Replug()
	run2 := serialtest.Start(t, d)
	dev.Write(Encode(indoor))
	if got := run2.Take(t, 1, 5*time.Second); got[0].Fields[4].Value != int64(8) {
		t.Fatalf("after replug %+v", got)
	}
}

// FuzzParser: never panics; every reading comes from a frame with a right
// checksum present in the input.
func FuzzParser(f *testing.F) {
	f.Add(Encode(indoor))
	s, _ := buildStream(rand.New(rand.NewPCG(1, 1)))
	f.Add(s[:200])
	f.Add([]byte{0x42, 0x4D, 0x00, 0x1C, 0x42, 0x4D})
	f.Fuzz(func(t *testing.T, in []byte) {
		p := &Parser{Counts: new(serialport.Counters)}
		for i := 0; i < len(in); i += 5 {
			p.Feed(in[i:min(i+5, len(in))], func(r devices.Reading) {
				var w [13]uint16
				if len(r.Fields) != 12 {
					t.Fatalf("fields %v", r.Fields)
				}
				for k, fl := range r.Fields {
					w[k] = uint16(fl.Value.(int64))
				}
				// The frame with these words (any reserved word) must be in the input.
				fr := Encode(w)
				if !bytes.Contains(in, fr[:28]) {
					t.Fatalf("reading %v not from the input", w)
				}
			})
		}
	})
}
