package wiegand

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/jonboulle/clockwork"
	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/gpio/gpiofake"
)

func bitsOf(s string) []uint8 {
	out := make([]uint8, 0, len(s))
	for _, c := range s {
		if c == '0' || c == '1' {
			out = append(out, uint8(c-'0'))
		}
	}
	return out
}

// Frames worked out by hand from the format definitions, so Encode and
// Decode cannot share a mistake.
func TestDecode(t *testing.T) {
	cases := []struct {
		name, frame string
		want        Card
		err         error
	}{
		// 26-bit, facility 1, card 1: one 1 in bits 1–12 → even parity 1;
		// one 1 in bits 13–24 → odd parity 0.
		{"h10301 fc1 card1", "1 00000001 0000000000000001 0", Card{26, 1, 1, "010001"}, nil},
		// 26-bit, facility 123 (0111 1011), card 12345 (0011 0000 0011 1001):
		// bits 1–12 = 01111011 0011 → 8 ones → even parity 0;
		// bits 13–24 = 0000 0011 1001 → 4 ones → odd parity 1.
		{"h10301 fc123 card12345", "0 01111011 0011000000111001 1", Card{26, 123, 12345, "7B3039"}, nil},
		// 34-bit, facility 0x1234, card 0x5678: 5 ones → 1; 8 ones → 1.
		{"34 fc4660 card22136", "1 0001001000110100 0101011001111000 1", Card{34, 0x1234, 0x5678, "12345678"}, nil},
		{"26 bad leading parity", "1 01111011 0011000000111001 1", Card{}, ErrParity},
		{"26 bad trailing parity", "0 01111011 0011000000111001 0", Card{}, ErrParity},
		{"26 flipped data bit", "0 01111011 0011000000111000 1", Card{}, ErrParity},
		{"34 bad leading parity", "0 0001001000110100 0101011001111000 1", Card{}, ErrParity},
		{"34 bad trailing parity", "1 0001001000110100 0101011001111000 0", Card{}, ErrParity},
		{"25 bits", "0 01111011 001100000011100 1", Card{}, ErrLength},
		{"37 bits", "1 00010010001101000 01010110011110001 11", Card{}, ErrLength},
		{"empty", "", Card{}, ErrLength},
	}
	for _, c := range cases {
		got, err := Decode(bitsOf(c.frame))
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: err %v; want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, n := range []int{26, 34} {
		for _, fc := range []uint32{0, 1, 18, 255} {
			for _, card := range []uint32{0, 1, 58016, 65535} {
				b, err := Encode(n, fc, card)
				if err != nil {
					t.Fatal(err)
				}
				c, err := Decode(b)
				if err != nil || c.Facility != fc || c.Number != card || c.Bits != n {
					t.Fatalf("%d/%d/%d: %+v %v", n, fc, card, c, err)
				}
			}
		}
	}
	if want := bitsOf("0 01111011 0011000000111001 1"); fmt.Sprint(mustEncode(t, 26, 123, 12345)) != fmt.Sprint(want) {
		t.Fatal("Encode(26,123,12345) differs from the hand-built frame")
	}
	if _, err := Encode(26, 256, 1); err == nil {
		t.Fatal("facility 256 fits no 26-bit frame")
	}
}

func mustEncode(t *testing.T, n int, fc, card uint32) []uint8 {
	b, err := Encode(n, fc, card)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rig runs a reader on two fake lines. The driver's clock (bit stamps, the
// frame gap) is fake and moved by the test; the lines' own poll timeouts
// are real, which only bounds how soon a watcher looks at its context.
type rig struct {
	d0, d1   *gpiofake.Pin
	clock    *clockwork.FakeClock
	gap      time.Duration
	dev      devices.Device
	readings chan devices.Reading
	done     chan error
	cancel   context.CancelFunc
}

func newRig(t *testing.T, extra string) *rig {
	t.Helper()
	real := clockwork.NewRealClock()
	r := &rig{d0: gpiofake.New(t, real), d1: gpiofake.New(t, real), clock: clockwork.NewFakeClock(), readings: make(chan devices.Reading, 64), done: make(chan error, 1)}
	src := fmt.Sprintf("d0 = %q\nd1 = %q\n%s", r.d0.N, r.d1.N, extra)
	d, _ := devices.Lookup("wiegand")
	dev, err := d.New(devices.Env{Name: "gate", Clock: r.clock}, func(v any) error { _, err := toml.Decode(src, v); return err })
	if err != nil {
		t.Fatal(err)
	}
	r.dev, r.gap = dev, dev.(*Reader).gap
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = func() { cancel(); r.d0.Wake(); r.d1.Wake() }
	go func() { r.done <- dev.Run(ctx, func(rd devices.Reading) { r.readings <- rd }) }()
	t.Cleanup(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run = %v on cancel; want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of cancel")
		}
	})
	return r
}

// send plays a frame as the reader does: a falling edge on D0 for each 0 and
// on D1 for each 1, bits spacing apart on the driver's clock. Each bit is
// stamped by its watcher before the clock moves on, so the order does not
// depend on which goroutine the scheduler runs first.
func (r *rig) send(t *testing.T, frame []uint8, spacing time.Duration) {
	t.Helper()
	for _, b := range frame {
		p := r.d0
		if b == 1 {
			p = r.d1
		}
		p.Edge(t, pgpio.Low)
		r.clock.Advance(spacing)
	}
}

// idle lets the line stay quiet for the frame gap: the frame so far ends.
func (r *rig) idle() { r.clock.Advance(r.gap) }

// counted waits until counter has risen to want (the frame was judged),
// failing after 5 s of real time.
func (r *rig) counted(t *testing.T, counter string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.dev.(devices.Counter).Counters()[counter] < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach %d within 5s; counters %v", counter, want, r.dev.(devices.Counter).Counters())
		}
		time.Sleep(time.Millisecond) // a counter has no event to wait on
	}
}

func (r *rig) next(t *testing.T) devices.Reading {
	t.Helper()
	select {
	case rd := <-r.readings:
		return rd
	case <-time.After(5 * time.Second):
		t.Fatalf("no reading within 5s; counters %v", r.dev.(devices.Counter).Counters())
	}
	return devices.Reading{}
}

func field(rd devices.Reading, name string) any {
	for _, f := range rd.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return nil
}

// Streams with correct and broken parity, and wrong lengths, fed as edges at
// the readers' real bit rates; a good card after each bad one proves the bad
// one was rejected (not merely late) and the counters say why.
func TestReaderStreams(t *testing.T) {
	// Bits keep the readers' 1–2 ms spacing; the frame gap is the default
	// 25 ms, on the driver's fake clock.
	r := newRig(t, ``)
	good26 := bitsOf("0 01111011 0011000000111001 1")
	good34 := bitsOf("1 0001001000110100 0101011001111000 1")
	cases := []struct {
		name    string
		frame   []uint8
		spacing time.Duration
		uid     string
		fc      int64
		card    int64
		counter string
	}{
		{"26-bit at 2 ms", good26, 2 * time.Millisecond, "7B3039", 123, 12345, ""},
		{"34-bit at 1.5 ms", good34, 1500 * time.Microsecond, "12345678", 0x1234, 0x5678, ""},
		{"26-bit broken parity", bitsOf("0 01111011 0011000000111000 1"), 2 * time.Millisecond, "", 0, 0, "bad_parity"},
		{"34-bit broken parity", bitsOf("0 0001001000110100 0101011001111000 1"), 2 * time.Millisecond, "", 0, 0, "bad_parity"},
		{"25-bit frame", good26[:25], 2 * time.Millisecond, "", 0, 0, "bad_length"},
		{"noise burst of 3", []uint8{1, 0, 1}, time.Millisecond, "", 0, 0, "bad_length"},
	}
	sentinel := mustEncode(t, 26, 1, 1)
	for _, c := range cases {
		before := r.dev.(devices.Counter).Counters()
		r.send(t, c.frame, c.spacing)
		r.idle()
		if c.uid == "" {
			// A valid card after the gap: the bad frame must not appear.
			r.counted(t, c.counter, before[c.counter]+1)
			r.send(t, sentinel, 2*time.Millisecond)
			r.idle()
			rd := r.next(t)
			if rd.UID != "010001" {
				t.Fatalf("%s: got %+v; want it rejected and the sentinel card next", c.name, rd)
			}
			after := r.dev.(devices.Counter).Counters()
			if after[c.counter] != before[c.counter]+1 {
				t.Fatalf("%s: %s %d → %d", c.name, c.counter, before[c.counter], after[c.counter])
			}
			continue
		}
		rd := r.next(t)
		if rd.UID != c.uid || field(rd, "facility") != c.fc || field(rd, "card") != c.card || field(rd, "bits") != int64(len(c.frame)) {
			t.Fatalf("%s: %+v", c.name, rd)
		}
	}
	c := r.dev.(devices.Counter).Counters()
	if c["bad_parity"] != 2 || c["bad_length"] != 2 || c["frames"] != 6 {
		t.Fatalf("counters %v", c)
	}
}

// Frames 150 ms apart are separate reads, and dedupe folds the repeat of a
// card held on the reader.
func TestReaderDedupe(t *testing.T) {
	r := newRig(t, `dedupe = "2s"`)
	f := mustEncode(t, 34, 7, 4242)
	t0 := r.clock.Now()
	r.send(t, f, 2*time.Millisecond)
	r.idle()
	if rd := r.next(t); field(rd, "card") != int64(4242) || !rd.Time.Equal(t0) {
		t.Fatalf("%+v; want card 4242 stamped at its first bit %v", rd, t0)
	}
	r.clock.Advance(time.Second)
	r.send(t, f, 2*time.Millisecond) // held on the reader: suppressed
	r.idle()
	r.counted(t, "duplicates_suppressed", 1)
	r.send(t, mustEncode(t, 34, 7, 4243), 2*time.Millisecond)
	r.idle()
	if rd := r.next(t); field(rd, "card") != int64(4243) {
		t.Fatalf("%+v", rd)
	}
	// The same card after the window (2 s after it was last seen) is a new
	// presentation.
	r.clock.Advance(3 * time.Second)
	r.send(t, f, 2*time.Millisecond)
	r.idle()
	if rd := r.next(t); field(rd, "card") != int64(4242) {
		t.Fatalf("%+v", rd)
	}
	if c := r.dev.(devices.Counter).Counters(); c["duplicates_suppressed"] != 1 {
		t.Fatalf("counters %v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{`d1 = "GPIO6"`, "d0: missing"},
		{`d0 = "GPIO5"`, "d1: missing"},
		{"d0 = \"GPIO5\"\nd1 = \"GPIO5\"", "d1: \"GPIO5\" is the same line as d0"},
		{"d0 = \"GPIO5\"\nd1 = \"GPIO6\"\nframe_gap = \"1ms\"", "frame_gap: 1ms is out of range"},
		{"d0 = \"GPIO5\"\nd1 = \"GPIO6\"\npull = \"maybe\"", `pull: "maybe" is not a pull`},
	}
	d, _ := devices.Lookup("wiegand")
	for _, c := range cases {
		_, err := d.New(devices.Env{}, func(v any) error { _, err := toml.Decode(c.src, v); return err })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want %q", c.src, err, c.want)
		}
	}
	// Header names resolve through the board profile.
	dev, err := d.New(devices.Env{Board: "rpi3"}, func(v any) error {
		_, err := toml.Decode("d0 = \"P1_11\"\nd1 = \"P1_13\"", v)
		return err
	})
	if err != nil || dev.(*Reader).d0 != "GPIO17" || dev.(*Reader).d1 != "GPIO27" || dev.(*Reader).gap != 25*time.Millisecond {
		t.Fatalf("%v %+v", err, dev)
	}
}
