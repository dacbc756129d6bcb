package mfrc522

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"periph.io/x/conn/v3/conntest"
	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/conn/v3/spi"
	"periph.io/x/conn/v3/spi/spireg"
	"periph.io/x/conn/v3/spi/spitest"

	"github.com/edgegw/edgegw/devices"
)

func TestCRCA(t *testing.T) {
	// ISO/IEC 14443-3 annex B examples.
	for _, c := range []struct {
		in   []byte
		want uint16
	}{{[]byte{0x00, 0x00}, 0x1EA0}, {[]byte{0x12, 0x34}, 0xCF26}} {
		if got := crcA(c.in); got != c.want {
			t.Errorf("crcA(% x) = %#04x; want %#04x", c.in, got, c.want)
		}
	}
}

var seq atomic.Int64

type rig struct {
	chip     *chip
	rec      *spitest.Record
	dev      devices.Device
	readings chan devices.Reading
	done     chan error
	cancel   context.CancelFunc
}

// newRig registers fake RST and IRQ pins and the simulated chip (behind
// spitest.Record, which keeps the transcript) as an SPI port, and builds the
// device against them by name, as a configuration would.
func newRig(t *testing.T, extra string) *rig {
	t.Helper()
	n := seq.Add(1)
	rst := &gpiotest.Pin{N: fmt.Sprintf("TEST_RC_RST_%d", n), Num: int(3000 + 2*n)}
	irq := &gpiotest.Pin{N: fmt.Sprintf("TEST_RC_IRQ_%d", n), Num: int(3001 + 2*n), EdgesChan: make(chan pgpio.Level, 16)}
	for _, p := range []*gpiotest.Pin{rst, irq} {
		if err := gpioreg.Register(p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gpioreg.Unregister(p.N) })
	}
	r := &rig{chip: newChip(rst, irq), readings: make(chan devices.Reading, 16), done: make(chan error, 1)}
	r.rec = &spitest.Record{Port: r.chip}
	port := fmt.Sprintf("TEST_SPI_%d", n)
	if err := spireg.Register(port, nil, -1, func() (spi.PortCloser, error) { return r.rec, nil }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spireg.Unregister(port) })
	src := fmt.Sprintf("spi = %q\nreset_pin = %q\nirq_pin = %q\n%s", port, rst.N, irq.N, extra)
	d, _ := devices.Lookup("mfrc522")
	dev, err := d.New(devices.Env{Name: "door"}, func(v any) error { _, err := toml.Decode(src, v); return err })
	if err != nil {
		t.Fatal(err)
	}
	r.dev = dev
	return r
}

func (r *rig) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.dev.Run(ctx, func(rd devices.Reading) { r.readings <- rd }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run = %v on cancel; want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of cancel")
		}
	})
}

// awaitSelect waits until the reader has selected the tag uid n times.
func (r *rig) awaitSelect(t *testing.T, uid string, n int) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for n > 0 {
		select {
		case got := <-r.chip.selected:
			if got == uid {
				n--
			}
		case <-deadline:
			t.Fatalf("tag %s not selected within 5s", uid)
		}
	}
}

// noReading asserts nothing was emitted. The driver reports a read before it
// starts the next one, so once the tag has been selected again any report of
// the previous read would be here.
func (r *rig) noReading(t *testing.T) {
	t.Helper()
	select {
	case rd := <-r.readings:
		t.Fatalf("unexpected reading %+v", rd)
	default:
	}
}

func (r *rig) next(t *testing.T) devices.Reading {
	t.Helper()
	select {
	case rd := <-r.readings:
		return rd
	case err := <-r.done:
		t.Fatalf("Run ended: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatalf("no reading within 5s; counters %v", r.dev.(devices.Counter).Counters())
	}
	return devices.Reading{}
}

// A MIFARE Classic (4-byte UID) and an NTAG (7-byte UID, two cascade levels)
// presented in turn: each reported once while held, by its UID.
func TestReadsTags(t *testing.T) {
	pollTimeout = 200 * time.Millisecond
	r := newRig(t, `dedupe = "10s"`)
	r.start(t)

	classic := []byte{0xDE, 0xAD, 0xBE, 0xEF}
	r.chip.present(classic)
	rd := r.next(t)
	if rd.UID != "DEADBEEF" || rd.Fields[0].Value != int64(4) {
		t.Fatalf("classic: %+v", rd)
	}
	// Held on the reader: read twice more, reported no more.
	r.awaitSelect(t, "DEADBEEF", 3)
	r.noReading(t)

	ntag := []byte{0x04, 0xA2, 0x24, 0x1A, 0x6F, 0x5C, 0x80}
	r.chip.present(ntag) // the classic leaves, the NTAG comes
	rd = r.next(t)
	if rd.UID != "04A2241A6F5C80" || rd.Fields[0].Value != int64(7) {
		t.Fatalf("ntag: %+v", rd)
	}
	r.chip.present(classic)         // back within the dedupe window: folded
	r.awaitSelect(t, "DEADBEEF", 2) // the second select follows the first's (suppressed) report
	r.noReading(t)
	r.chip.present([]byte{0x11, 0x22, 0x33, 0x44})
	if rd = r.next(t); rd.UID != "11223344" {
		t.Fatalf("third tag: %+v", rd)
	}
	if c := r.dev.(devices.Counter).Counters(); c["reads"] != 3 || c["duplicates_suppressed"] < 3 {
		t.Fatalf("counters %v", c)
	}

	// The transcript shows the datasheet's exchange: REQA as a 7-bit short
	// frame (FIFO 0x26, BitFramingReg 0x87 with StartSend), then the
	// anticollision command 93 20 through the FIFO.
	r.rec.Lock()
	ops := append([]struct{ W, R []byte }(nil), convert(r.rec.Ops)...)
	r.rec.Unlock()
	want := [][]byte{
		{0x37<<1&0x7E | 0x80, 0x00}, // read VersionReg
		{0x09 << 1, 0x26},           // FIFO ← REQA
		{0x0D << 1, 0x87},           // BitFraming: StartSend, 7 bits
		{0x09 << 1, 0x93},           // FIFO ← SEL CL1
		{0x09 << 1, 0x20},           // FIFO ← NVB 0x20
		{0x09 << 1, 0x95},           // FIFO ← SEL CL2 (the NTAG)
	}
	i := 0
	for _, op := range ops {
		if i < len(want) && bytes.Equal(op.W, want[i]) {
			if i == 0 && op.R[1] != 0x92 {
				t.Fatalf("version read %x", op.R)
			}
			i++
		}
	}
	if i != len(want) {
		t.Fatalf("transcript lacks % x (found %d of %d in %d transactions)", want[i], i, len(want), len(ops))
	}
	t.Logf("%d SPI transactions", len(ops))
}

func convert(ops []conntest.IO) []struct{ W, R []byte } {
	out := make([]struct{ W, R []byte }, len(ops))
	for i, o := range ops {
		out[i].W, out[i].R = o.W, o.R
	}
	return out
}

// A reader whose RST is held low (or that is not there) answers nothing:
// Run says so instead of polling a dead bus.
func TestNoChip(t *testing.T) {
	r := newRig(t, "")
	r.chip.version = 0x00
	err := r.dev.Run(t.Context(), func(devices.Reading) {})
	if err == nil || !strings.Contains(err.Error(), "no MFRC522 answering") {
		t.Fatalf("Run = %v", err)
	}
}

func TestConfig(t *testing.T) {
	d, _ := devices.Lookup("mfrc522")
	for _, c := range []struct{ board, src, want string }{
		{"", `antenna_gain = 9`, "antenna_gain: 9 is out of range"},
		{"", `dedupe = "-1s"`, `"-1s" is negative`},
		{"", `irq_pin = "GPIO25"`, `irq_pin: "GPIO25" is the same line as reset_pin`},
		{"rpi4", `irq_pin = "P1_4"`, "irq_pin: boards: Raspberry Pi 4 Model B has no GPIO at header position"},
	} {
		_, err := d.New(devices.Env{Board: c.board}, func(v any) error { _, err := toml.Decode(c.src, v); return err })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want %q", c.src, err, c.want)
		}
	}
	dev, err := d.New(devices.Env{Board: "orangepi-zero"}, func(v any) error { return nil })
	if err != nil || dev.(*Reader).spi != "/dev/spidev1.0" {
		t.Fatalf("Orange Pi default SPI: %v %+v", err, dev)
	}
}
