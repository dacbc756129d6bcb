package bme280

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/edgegw/edgegw/devices"
)

// A real BME280's register contents (the transcript periph's bmxx80 tests
// recorded from one): chip id, trimming parameters, one raw measurement.
var (
	calib   = []byte{0x10, 0x6e, 0x6c, 0x66, 0x32, 0x0, 0x5d, 0x95, 0xb8, 0xd5, 0xd0, 0xb, 0x77, 0x1e, 0x9d, 0xff, 0xf9, 0xff, 0xac, 0x26, 0xa, 0xd8, 0xbd, 0x10, 0x0, 0x4b}
	calibH  = []byte{0x6e, 0x1, 0x0, 0x13, 0x5, 0x0, 0x1e}
	rawMeas = []byte{0x4a, 0x52, 0xc0, 0x80, 0x96, 0xc0, 0x7a, 0x76}
)

// transcript is the I²C traffic of start-up and one forced measurement,
// register by register as in the datasheet (BST-BME280-DS002, §5.4 memory
// map, §3.3.3 forced mode, §4 data readout).
func transcript(addr uint16) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0xd0}, R: []byte{0x60}}, // id: 0x60 is a BME280
		{Addr: addr, W: []byte{0x88}, R: calib},        // calib00..25: dig_T*, dig_P*, dig_H1
		{Addr: addr, W: []byte{0xe1}, R: calibH},       // calib26..32: dig_H2..H6
		// ctrl_meas sleep (osrs_t=osrs_p=×4), ctrl_hum osrs_h=×4, config
		// t_sb=1000ms, filter off, ctrl_meas again (it latches ctrl_hum).
		{Addr: addr, W: []byte{0xf4, 0x6c, 0xf2, 0x03, 0xf5, 0xa0, 0xf4, 0x6c}},
		{Addr: addr, W: []byte{0xf4, 0x6d}},            // ctrl_meas mode=forced
		{Addr: addr, W: []byte{0xf3}, R: []byte{0x08}}, // status: measuring
		{Addr: addr, W: []byte{0xf3}, R: []byte{0x00}}, // status: done
		{Addr: addr, W: []byte{0xf7}, R: rawMeas},      // press, temp, hum burst read
	}
}

var busSeq atomic.Int64

// playbackBus registers a playback as an I²C bus under a fresh name, so Run
// opens it through i2creg exactly as it opens /dev/i2c-1.
func playbackBus(t *testing.T, ops []i2ctest.IO) (string, *i2ctest.Playback) {
	t.Helper()
	pb := &i2ctest.Playback{Ops: ops, DontPanic: true}
	name := fmt.Sprintf("TEST_I2C_%d", busSeq.Add(1))
	if err := i2creg.Register(name, nil, -1, func() (i2c.BusCloser, error) { return pb, nil }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { i2creg.Unregister(name) })
	return name, pb
}

func newSensor(t *testing.T, src string) devices.Device {
	t.Helper()
	d, _ := devices.Lookup("bme280")
	dev, err := d.New(devices.Env{Name: "climate"}, func(v any) error { _, err := toml.Decode(src, v); return err })
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

func TestMeasurement(t *testing.T) {
	for _, addr := range []uint16{0x76, 0x77} {
		bus, pb := playbackBus(t, transcript(addr))
		dev := newSensor(t, fmt.Sprintf("i2c = %q\naddress = %#x\ninterval = \"1h\"", bus, addr))
		ctx, cancel := context.WithCancel(context.Background())
		var got devices.Reading
		done := make(chan error, 1)
		go func() {
			done <- dev.Run(ctx, func(rd devices.Reading) { got = rd; cancel() })
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run = %v", err)
			}
		case <-time.After(5 * time.Second):
			cancel()
			t.Fatal("no reading within 5s")
		}
		if pb.Count != len(pb.Ops) {
			t.Fatalf("transcript: %d of %d transactions", pb.Count, len(pb.Ops))
		}
		want := datasheetCompensation(t)
		names := []string{"temperature", "humidity", "pressure"}
		units := []string{"°C", "%RH", "hPa"}
		if len(got.Fields) != 3 {
			t.Fatalf("fields %+v", got.Fields)
		}
		for i, f := range got.Fields {
			if f.Name != names[i] || f.Unit != units[i] {
				t.Fatalf("field %d = %+v", i, f)
			}
			// The driver's integer compensation against the datasheet's
			// floating-point one (§8.1), to the published resolution.
			if math.Abs(f.Value.(float64)-want[i]) > 0.02 {
				t.Errorf("%s = %v; the datasheet formula gives %.4f", f.Name, f.Value, want[i])
			}
		}
		// The values a reader of the payload will see.
		if got.Fields[0].Value != 23.72 || got.Fields[1].Value != 65.31 || got.Fields[2].Value != 1009.43 {
			t.Errorf("reading %+v", got.Fields)
		}
		if c := dev.(devices.Counter).Counters(); c["reads"] != 1 {
			t.Errorf("counters %v", c)
		}
	}
}

// A BMP280 (id 0x58) has no humidity: the reading leaves it out.
func TestBMP280(t *testing.T) {
	ops := []i2ctest.IO{
		{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x58}},
		{Addr: 0x76, W: []byte{0x88}, R: calib},
		{Addr: 0x76, W: []byte{0xf4, 0x6c, 0xf5, 0xa0, 0xf4, 0x6c}},
		{Addr: 0x76, W: []byte{0xf4, 0x6d}},
		{Addr: 0x76, W: []byte{0xf3}, R: []byte{0x00}},
		{Addr: 0x76, W: []byte{0xf7}, R: rawMeas[:6]},
	}
	bus, _ := playbackBus(t, ops)
	dev := newSensor(t, fmt.Sprintf("i2c = %q\ninterval = \"1h\"", bus))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got devices.Reading
	if err := dev.Run(ctx, func(rd devices.Reading) { got = rd; cancel() }); err != nil {
		t.Fatal(err)
	}
	if len(got.Fields) != 2 || got.Fields[0].Name != "temperature" || got.Fields[1].Name != "pressure" {
		t.Fatalf("%+v", got.Fields)
	}
}

// A chip that is not a BME280 (wrong id), and a bus that stops answering
// mid-run, end Run with errors that say what and where.
func TestFailures(t *testing.T) {
	bus, _ := playbackBus(t, []i2ctest.IO{{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x61}}})
	err := newSensor(t, fmt.Sprintf("i2c = %q", bus)).Run(t.Context(), func(devices.Reading) {})
	if err == nil || !strings.Contains(err.Error(), "no BME280/BMP280 at 0x76 on "+bus) || !strings.Contains(err.Error(), "unexpected chip id 61") {
		t.Fatalf("wrong chip: %v", err)
	}

	// Start-up succeeds, then every measurement's first transaction fails
	// (playback exhausted): three failures in a row end Run.
	ops := transcript(0x76)[:4]
	bus, _ = playbackBus(t, ops)
	dev := newSensor(t, fmt.Sprintf("i2c = %q\ninterval = \"100ms\"", bus))
	err = dev.Run(t.Context(), func(devices.Reading) { t.Error("no reading expected") })
	if err == nil || !strings.Contains(err.Error(), "3 measurements in a row failed") {
		t.Fatalf("dead bus: %v", err)
	}
	if c := dev.(devices.Counter).Counters(); c["read_errors"] != 3 {
		t.Fatalf("counters %v", c)
	}

	err = newSensor(t, `i2c = "/dev/i2c-99"`).Run(t.Context(), func(devices.Reading) {})
	if err == nil || !strings.Contains(err.Error(), `open I2C bus "/dev/i2c-99"`) {
		t.Fatalf("missing bus: %v", err)
	}
}

func TestConfig(t *testing.T) {
	d, _ := devices.Lookup("bme280")
	for _, c := range []struct{ src, want string }{
		{`address = 0x40`, "address: 0x40 is not a BME280 address"},
		{`interval = "10ms"`, "interval: 10ms is too short"},
	} {
		_, err := d.New(devices.Env{}, func(v any) error { _, err := toml.Decode(c.src, v); return err })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v", c.src, err)
		}
	}
	dev, err := d.New(devices.Env{Board: "bbb"}, func(v any) error { return nil })
	if err != nil || dev.(*Sensor).bus != "/dev/i2c-2" {
		t.Fatalf("BeagleBone default bus: %v %+v", err, dev)
	}
}

// datasheetCompensation applies the datasheet's floating-point formulas
// (BST-BME280-DS002 §8.1) to the transcript's trimming parameters and raw
// values: °C, %RH, hPa.
func datasheetCompensation(t *testing.T) [3]float64 {
	u16 := func(b []byte) float64 { return float64(binary.LittleEndian.Uint16(b)) }
	s16 := func(b []byte) float64 { return float64(int16(binary.LittleEndian.Uint16(b))) }
	T1, T2, T3 := u16(calib[0:]), s16(calib[2:]), s16(calib[4:])
	P1 := u16(calib[6:])
	var P [10]float64
	for i := 2; i <= 9; i++ {
		P[i] = s16(calib[6+2*(i-1):])
	}
	H1 := float64(calib[25])
	H2 := s16(calibH[0:])
	H3 := float64(calibH[2])
	H4 := float64(int16(uint16(calibH[3])<<8|uint16(calibH[4]&0x0f)<<4) >> 4)
	H5 := float64(int16(uint16(calibH[5])<<8|uint16(calibH[4]&0xf0)) >> 4)
	H6 := float64(int8(calibH[6]))

	adcP := float64(int32(rawMeas[0])<<12 | int32(rawMeas[1])<<4 | int32(rawMeas[2])>>4)
	adcT := float64(int32(rawMeas[3])<<12 | int32(rawMeas[4])<<4 | int32(rawMeas[5])>>4)
	adcH := float64(int32(rawMeas[6])<<8 | int32(rawMeas[7]))

	v1 := (adcT/16384.0 - T1/1024.0) * T2
	v2 := (adcT/131072.0 - T1/8192.0) * (adcT/131072.0 - T1/8192.0) * T3
	tFine := v1 + v2
	temp := tFine / 5120.0

	v1 = tFine/2.0 - 64000.0
	v2 = v1 * v1 * P[6] / 32768.0
	v2 = v2 + v1*P[5]*2.0
	v2 = v2/4.0 + P[4]*65536.0
	v1 = (P[3]*v1*v1/524288.0 + P[2]*v1) / 524288.0
	v1 = (1.0 + v1/32768.0) * P1
	p := 1048576.0 - adcP
	p = (p - v2/4096.0) * 6250.0 / v1
	v1 = P[9] * p * p / 2147483648.0
	v2 = p * P[8] / 32768.0
	p = p + (v1+v2+P[7])/16.0

	h := tFine - 76800.0
	h = (adcH - (H4*64.0 + H5/16384.0*h)) * (H2 / 65536.0 * (1.0 + H6/67108864.0*h*(1.0+H3/67108864.0*h)))
	h = h * (1.0 - H1*h/524288.0)
	h = min(max(h, 0), 100)
	t.Logf("datasheet: %.4f °C, %.4f %%RH, %.4f hPa", temp, h, p/100)
	return [3]float64{temp, h, p / 100}
}
