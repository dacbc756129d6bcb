package modbus

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/modbus/rtuslave"
	"github.com/edgegw/edgegw/devices/serialtest"
)

func TestCRC(t *testing.T) {
	// Read Holding Registers, unit 1, address 0, 10 registers: the
	// specification's example frame ends in C5 CD.
	got := fmt.Sprintf("% X", rtuslave.AppendCRC([]byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x0A}))
	if got != "01 03 00 00 00 0A C5 CD" {
		t.Fatalf("frame %s", got)
	}
}

func f64(v float64) *float64 { return &v }

func TestDecode(t *testing.T) {
	v230 := math.Float32bits(230.1)
	for _, tc := range []struct {
		reg  Register
		raw  []byte
		want any
	}{
		{Register{Type: "int16", ByteOrder: "big"}, []byte{0xFF, 0x29}, int64(-215)},
		{Register{Type: "int16", ByteOrder: "big", Scale: f64(0.1)}, []byte{0x00, 0xD7}, 21.5},
		{Register{Type: "uint16", ByteOrder: "big"}, []byte{0xFF, 0xFF}, int64(65535)},
		{Register{Type: "uint16", ByteOrder: "little"}, []byte{0x34, 0x12}, int64(0x1234)},
		{Register{Type: "uint32", ByteOrder: "big", WordOrder: "high_first"}, []byte{0x00, 0x01, 0x86, 0xA0}, int64(100000)},
		{Register{Type: "uint32", ByteOrder: "big", WordOrder: "low_first"}, []byte{0x86, 0xA0, 0x00, 0x01}, int64(100000)},
		{Register{Type: "int32", ByteOrder: "little", WordOrder: "low_first"}, []byte{0x60, 0x79, 0xFE, 0xFF}, int64(-100000)},
		{Register{Type: "float32", ByteOrder: "big", WordOrder: "high_first"}, binary.BigEndian.AppendUint32(nil, v230), float64(float32(230.1))},
		{Register{Type: "float32", ByteOrder: "big", WordOrder: "low_first"}, []byte{byte(v230 >> 8), byte(v230), byte(v230 >> 24), byte(v230 >> 16)}, float64(float32(230.1))},
		{Register{Type: "float32", ByteOrder: "little", WordOrder: "high_first"}, []byte{byte(v230 >> 16), byte(v230 >> 24), byte(v230), byte(v230 >> 8)}, float64(float32(230.1))},
		{Register{Type: "uint16", ByteOrder: "big", Scale: f64(0.5), Offset: -40}, []byte{0x00, 0x64}, 10.0},
	} {
		got, err := Decode(tc.reg, tc.raw)
		if err != nil || got != tc.want {
			t.Errorf("%+v % X = %v (%T), %v; want %v (%T)", tc.reg, tc.raw, got, got, err, tc.want, tc.want)
		}
	}
	if _, err := Decode(Register{Type: "float32", ByteOrder: "big", WordOrder: "high_first"}, []byte{0x7F, 0xC0, 0, 0}); err == nil {
		t.Error("NaN accepted")
	}
}

// loadConfig reads testdata/config.toml with the port replaced.
func loadConfig(t *testing.T, port string) Config {
	t.Helper()
	b, err := os.ReadFile("testdata/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Device []toml.Primitive }
	md, err := toml.Decode(string(b), &doc)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Config
		Name, Type string
	}
	if err := md.PrimitiveDecode(doc.Device[0], &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Port = port
	return cfg.Config
}

func units() map[byte]*rtuslave.Unit {
	v := math.Float32bits(230.1)
	return map[byte]*rtuslave.Unit{
		1: {
			Holding: map[uint16]uint16{
				0: 0x00D7,            // 215 → 21.5 °C
				1: 402,               // 40.2 %
				2: 0x0001, 3: 0x86A0, // 100000 Wh, high word first
				20: 0x3412, 21: 0x0000, // 0x00001234 = 4660, low word first, bytes swapped → 46.6 - 40 = 6.6 °C
			},
			Input:    map[uint16]uint16{10: uint16(v), 11: uint16(v >> 16)}, // low word first
			Coils:    map[uint16]bool{5: true},
			Discrete: map[uint16]bool{7: false},
		},
		2: {Holding: map[uint16]uint16{0: 12}}, // address 99 missing: exception 02
		9: {Silent: true},
	}
}

func render(r devices.Reading) string {
	var s []string
	for _, f := range r.Fields {
		s = append(s, fmt.Sprintf("%s=%v(%T)%s", f.Name, f.Value, f.Value, f.Unit))
	}
	return strings.Join(s, " ")
}

const (
	wantSlave1 = "slave=1(int64) temperature=21.5(float64)°C humidity=40.2(float64)% energy=100000(int64)Wh voltage=230.10000610351562(float64)V offset_temp=6.6(float64)°C pump_on=true(bool) door_closed=false(bool)"
	wantSlave2 = "slave=2(int64) flow=12(int64)l/min"
)

func serve(t *testing.T, bus *rtuslave.Bus, closeDev func()) {
	done := make(chan struct{})
	go func() { defer close(done); bus.Serve() }()
	t.Cleanup(func() { closeDev(); <-done })
}

// TestPollsRealRTUSlave: a Modbus RTU slave bus on the other end of a pty;
// the driver's readings match its registers; slave 2's missing register
// answers exception 02 (counted, the rest of slave 2 still reported); slave
// 9 never answers (timeouts counted); the loop goes on.
func TestPollsRealRTUSlave(t *testing.T) {
	path, dev := serialtest.NewPTY(t)
	bus := rtuslave.New(dev, units())
	serve(t, bus, func() { dev.Close() })
	b, err := New(devices.Env{Name: "plant"}, loadConfig(t, path))
	if err != nil {
		t.Fatal(err)
	}
	run := serialtest.Start(t, b)
	seen := map[string]int{}
	deadline := time.After(15 * time.Second)
	for seen[wantSlave1] < 3 || seen[wantSlave2] < 3 || b.Counters()[Timeouts] < 2 {
		select {
		case r := <-run.C:
			s := render(r)
			if s != wantSlave1 && s != wantSlave2 {
				t.Fatalf("unexpected reading %s", s)
			}
			seen[s]++
		case <-deadline:
			t.Fatalf("seen %v, counters %v", seen, b.Counters())
		}
	}
	st := b.Counters()
	if st[Exceptions] < 3 || st["exception_illegal_data_address"] != st[Exceptions] {
		t.Errorf("exceptions: %v", st)
	}
	if st[BadCRC] != 0 || st[BadFrame] != 0 {
		t.Errorf("counters %v", st)
	}
	// A register changes on the slave: the next poll reports it.
	bus.Set(2, 0, 13)
	deadline = time.After(5 * time.Second)
	for {
		select {
		case r := <-run.C:
			if render(r) == "slave=2(int64) flow=13(int64)l/min" {
				if err := run.Stop(t); err != nil {
					t.Fatal(err)
				}
				return
			}
		case <-deadline:
			t.Fatal("changed register never reported")
		}
	}
}

// TestUnplug: the adapter goes away: Run returns an error naming the port;
// a new adapter under the same path: Run again polls it.
func TestUnplug(t *testing.T) {
	plug := serialtest.NewPlug(t)
	bus := rtuslave.New(plug.Dev(), units())
	serve(t, bus, func() { plug.Unplug() })
	cfg := loadConfig(t, plug.Path)
	cfg.Slaves = cfg.Slaves[:1]
	b, err := New(devices.Env{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	run := serialtest.Start(t, b)
	if r := run.Take(t, 1, 5*time.Second); render(r[0]) != wantSlave1 {
		t.Fatalf("got %s", render(r[0]))
	}
	plug.Unplug()
	if err := run.Wait(t, 10*time.Second); err == nil || !strings.Contains(err.Error(), plug.Path) {
		t.Fatalf("Run after unplug = %v", err)
	}
	bus2 := rtuslave.New(plug.Replug(), units())
	serve(t, bus2, func() { plug.Unplug() })
	run2 := serialtest.Start(t, b)
	if r := run2.Take(t, 1, 5*time.Second); render(r[0]) != wantSlave1 {
		t.Fatalf("after replug got %s", render(r[0]))
	}
	if err := run2.Stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestBadConfig(t *testing.T) {
	base := "port = \"/dev/ttyUSB0\"\n"
	reg := "[[slave]]\nid = 1\n[[slave.register]]\nname = \"t\"\naddress = 0\n"
	for _, tc := range []struct{ cfg, want string }{
		{base, "slave: no [[device.slave]] table"},
		{base + "parity = \"mark\"\n" + reg, `parity: "mark" is not supported for Modbus RTU`},
		{base + "baud = 9700\n" + reg, "baud: 9700 is not a standard rate"},
		{base + "[[slave]]\nid = 0\n[[slave.register]]\nname = \"t\"\n", "slave[0].id: 0 is out of range (1 … 247)"},
		{base + "[[slave]]\nid = 1\n", "slave[0].register: none"},
		{base + reg + "type = \"int64\"\n", `slave[0].register[0].type: "int64" is not allowed (one of int16, uint16, int32, uint32, float32)`},
		{base + reg + "table = \"holdings\"\n", `slave[0].register[0].table: "holdings" is not allowed`},
		{base + reg + "word_order = \"little\"\n", `slave[0].register[0].word_order: "little" is not allowed (one of high_first, low_first)`},
		{base + reg + "byte_order = \"ab\"\n", `slave[0].register[0].byte_order: "ab" is not allowed`},
		{base + reg + "scale = 0\n", "slave[0].register[0].scale: 0 would report"},
		{base + "[[slave]]\nid = 1\n[[slave.register]]\nname = \"Temp\"\n", `slave[0].register[0].name: "Temp" is not a snake_case key`},
		{base + "[[slave]]\nid = 1\n[[slave.register]]\nname = \"t\"\naddress = 65535\ntype = \"uint32\"\n", "slave[0].register[0].address: 65535 is out of range"},
		{base + "interval = \"1ms\"\n" + reg, "interval: 1ms is too short"},
		{base + reg + "[[slave]]\nid = 1\n[[slave.register]]\nname = \"u\"\n", "slave[1].id: 1 is configured twice"},
	} {
		var c Config
		if err := serialtest.Decoder(tc.cfg)(&c); err != nil {
			t.Fatalf("%q: decode: %v", tc.cfg, err)
		}
		_, err := New(devices.Env{}, c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %q", tc.cfg, err, tc.want)
		}
	}
}

// FuzzDecode: any register bytes, any type and order: never panics, never a
// NaN or infinite value.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x00, 0xD7}, uint8(0), uint8(0), 0.1, 0.0)
	f.Add([]byte{0x43, 0x66, 0x19, 0x9A}, uint8(4), uint8(3), 1.0, 0.0)
	f.Add([]byte{0x7F, 0x80, 0x00, 0x00}, uint8(4), uint8(0), 1e300, -1e300)
	f.Fuzz(func(t *testing.T, raw []byte, typ, order uint8, scale, offset float64) {
		r := Register{Type: ValueTypes[int(typ)%len(ValueTypes)], ByteOrder: ByteOrders[order&1], WordOrder: WordOrders[order>>1&1], Offset: offset}
		if scale != 0 && scale != 1 {
			r.Scale = &scale
		}
		v, err := Decode(r, raw)
		if err != nil {
			return
		}
		if len(raw) != 2*r.words() {
			t.Fatalf("accepted %d bytes for %s", len(raw), r.Type)
		}
		if x, ok := v.(float64); ok && (math.IsNaN(x) || math.IsInf(x, 0)) {
			t.Fatalf("non-finite %v from % X", x, raw)
		}
	})
}
