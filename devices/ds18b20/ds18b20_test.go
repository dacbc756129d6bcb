package ds18b20

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/edgegw/edgegw/devices"
)

func newBus(t *testing.T, src string) *Bus {
	t.Helper()
	d, ok := devices.Lookup("ds18b20")
	if !ok {
		t.Fatal("ds18b20 not registered")
	}
	dev, err := d.New(devices.Env{Name: "probes"}, func(v any) error { _, err := toml.Decode(src, v); return err })
	if err != nil {
		t.Fatal(err)
	}
	return dev.(*Bus)
}

func fixture(t *testing.T) string {
	dir, err := filepath.Abs("testdata/w1/devices")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func field(rd devices.Reading, name string) any {
	for _, f := range rd.Fields {
		if f.Name == name {
			return f.Value
		}
	}
	return nil
}

// The fixture is a w1 devices directory as the kernel lays it out: a bus
// master, a good DS18B20, one below zero, one whose read failed the CRC
// (kernel says NO), one that did not answer (all zeros, which pass a CRC),
// one showing the 85 °C power-on value, a DS18S20, and an unrelated family.
func TestRunReadsAllProbes(t *testing.T) {
	b := newBus(t, `dir = "`+fixture(t)+`"
interval = "1s"`)
	ctx, cancel := context.WithCancel(context.Background())
	got := map[string]float64{}
	var units []string
	done := make(chan error, 1)
	go func() {
		done <- b.Run(ctx, func(rd devices.Reading) {
			got[field(rd, "rom").(string)] = field(rd, "temperature").(float64)
			units = append(units, rd.Fields[1].Unit)
			if len(got) == 3 {
				cancel()
			}
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("no three readings within 5s")
	}
	want := map[string]float64{"28-0316a2794aff": 23.125, "28-3c01d607d1a5": -10.125, "10-000802b4f2c1": 22.5}
	if len(got) != len(want) {
		t.Fatalf("readings %v; want %v", got, want)
	}
	for rom, v := range want {
		if got[rom] != v {
			t.Errorf("%s = %v; want %v", rom, got[rom], v)
		}
	}
	if units[0] != "°C" {
		t.Errorf("unit %q", units[0])
	}
	c := b.Counters()
	if c["bad_crc"] != 1 || c["no_response"] != 1 || c["suspect_85c"] != 1 || c["reads"] != 3 {
		t.Fatalf("counters %v", c)
	}
}

// 85.000 °C right after power-on is skipped; after a warm reading it is
// believed (a probe in hot water can read 85 °C).
func TestPowerOnValue(t *testing.T) {
	dir := t.TempDir()
	probe := filepath.Join(dir, "28-041752a1e2ff")
	os.Mkdir(probe, 0o755)
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(probe, "w1_slave"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := newBus(t, `dir = "`+dir+`"`)
	var got []float64
	emit := func(rd devices.Reading) { got = append(got, field(rd, "temperature").(float64)) }
	const p85 = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"
	write(p85)
	b.Scan(t.Context(), emit)
	write("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n")
	b.Scan(t.Context(), emit)
	write(p85) // 23 °C → 85 °C in one interval: a reset, not heat
	b.Scan(t.Context(), emit)
	// 80.0625 °C = 1281 = 0x0501
	write("01 05 4b 46 7f ff 0f 10 17 : crc=17 YES\n01 05 4b 46 7f ff 0f 10 17 t=80062\n")
	b.Scan(t.Context(), emit)
	write(p85)
	b.Scan(t.Context(), emit)
	if want := []float64{23.125, 80.062, 85}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("readings %v; want %v", got, want)
	}
	if c := b.Counters(); c["suspect_85c"] != 2 {
		t.Fatalf("counters %v", c)
	}
}

func TestParseW1Slave(t *testing.T) {
	cases := []struct {
		in   string
		milC int64
		err  error
	}{
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 23125, nil},
		{"73 01 4b 46 7f ff 0e 10 57 : crc=57 NO\n73 01 4b 46 7f ff 0e 10 57 t=23187\n", 0, ErrCRC},
		// Kernel said YES but a byte differs from its CRC: refused as well.
		{"72 01 4b 46 7f ff 0e 11 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 11 57 t=23125\n", 0, ErrCRC},
		{"ff ff ff ff ff ff ff ff ff : crc=ff NO\nff ff ff ff ff ff ff ff ff t=-62\n", 0, ErrCRC},
		{"00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n", 0, ErrNoResponse},
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", 0, ErrFormat},
		{"72 01 4b 46 7f ff 0e 10 : crc=57 YES\nx t=1\n", 0, ErrFormat},
		{"72 01 4b 46 7f ff 0e 10 zz : crc=57 YES\nx t=1\n", 0, ErrFormat},
		{"72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=abc\n", 0, ErrFormat},
		{"", 0, ErrFormat},
	}
	for _, c := range cases {
		s, err := ParseW1Slave([]byte(c.in))
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%q: err %v; want %v", c.in, err, c.err)
			}
			continue
		}
		if err != nil || s.MilliC != c.milC {
			t.Errorf("%q: %+v %v", c.in, s, err)
		}
	}
}

func TestConfig(t *testing.T) {
	d, _ := devices.Lookup("ds18b20")
	cases := []struct{ src, want string }{
		{`dir = "relative/path"`, `dir: "relative/path" must be an absolute path`},
		{`interval = "100ms"`, "interval: 100ms is too short"},
		{`probes = ["28-0316a2794aff", "29-nope"]`, `probes[1]: "29-nope" is not a w1 thermometer ROM id`},
	}
	for _, c := range cases {
		_, err := d.New(devices.Env{}, func(v any) error { _, err := toml.Decode(c.src, v); return err })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want %q", c.src, err, c.want)
		}
	}
	// probes limits the scan.
	b := newBus(t, `dir = "`+fixture(t)+`"
probes = ["28-3C01D607D1A5"]`)
	var roms []string
	b.Scan(t.Context(), func(rd devices.Reading) { roms = append(roms, field(rd, "rom").(string)) })
	if len(roms) != 1 || roms[0] != "28-3c01d607d1a5" {
		t.Fatalf("roms %v", roms)
	}
	// A missing w1 directory is a Run error that says what to load.
	b = newBus(t, `dir = "/nonexistent/w1"`)
	if err := b.Run(t.Context(), func(devices.Reading) {}); err == nil || !strings.Contains(err.Error(), "dtoverlay=w1-gpio") {
		t.Fatalf("Run = %v", err)
	}
}
