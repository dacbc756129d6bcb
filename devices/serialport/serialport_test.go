package serialport_test

import (
	"context"

	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/edgegw/edgegw/devices/serialport"
	"github.com/edgegw/edgegw/devices/serialtest"
	"go.bug.st/serial"
)

func TestValidate(t *testing.T) {
	ok := serialport.Defaults8N1(9600)
	ok.Port = "/dev/ttyAMA0"
	for _, tc := range []struct {
		name string
		mod  func(*serialport.Config)
		want string // "" = valid
	}{
		{"defaults", func(*serialport.Config) {}, ""},
		{"921600 7E2", func(c *serialport.Config) { c.Baud, c.DataBits, c.Parity, c.StopBits = 921600, 7, "even", 2 }, ""},
		{"5 bits 1.5 stop", func(c *serialport.Config) { c.DataBits, c.StopBits = 5, 1.5 }, ""},
		{"bad baud", func(c *serialport.Config) { c.Baud = 9601 }, "baud: 9601 is not a standard rate (one of 1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400, 460800, 921600)"},
		{"no port", func(c *serialport.Config) { c.Port = " " }, "port: missing"},
		{"parity", func(c *serialport.Config) { c.Parity = "N" }, `parity: "N" is not allowed (one of none, even, odd, mark, space)`},
		{"stop bits", func(c *serialport.Config) { c.StopBits = 0.5 }, "stop_bits: 0.5 is not allowed (one of 1, 1.5, 2)"},
		{"1.5 with 8 bits", func(c *serialport.Config) { c.StopBits = 1.5 }, "stop_bits: 1.5 needs data_bits = 5"},
		{"data bits", func(c *serialport.Config) { c.DataBits = 4 }, "data_bits: 4 is not allowed (one of 5, 6, 7, 8)"},
	} {
		c := ok
		tc.mod(&c)
		err := c.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// Every bad key is reported, one line each.
	bad := serialport.Config{Baud: 1, DataBits: 9, Parity: "x", StopBits: 3}
	if err := bad.Validate(); err == nil || strings.Count(err.Error(), "\n") != 4 {
		t.Errorf("all errors: %v", err)
	}
}

func TestModeStopBits(t *testing.T) {
	c := serialport.Config{Baud: 9600, DataBits: 5, Parity: "mark", StopBits: 1.5}
	if m := c.Mode(); m.StopBits != serial.TwoStopBits || m.Parity != serial.MarkParity || m.DataBits != 5 {
		t.Fatalf("mode %+v", m)
	}
}

func TestDurationTOML(t *testing.T) {
	var v struct {
		D serialport.Duration `toml:"d"`
	}
	if _, err := toml.Decode(`d = "250ms"`, &v); err != nil || v.D.D() != 250*time.Millisecond {
		t.Fatalf("%v %v", v.D, err)
	}
	for _, in := range []string{`d = "2 seconds"`, `d = "-1s"`, `d = 5`} {
		if _, err := toml.Decode(in, &v); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

func TestLineSplitter(t *testing.T) {
	var s serialport.LineSplitter
	s.Max = 8
	var lines []string
	over := 0
	in := "ab\r\ncd\n" + strings.Repeat("x", 20) + "\nefgh\r\n12345678\n123456789\nlast"
	for i := range len(in) {
		s.Feed([]byte{in[i]}, func(l []byte) { lines = append(lines, string(l)) }, func() { over++ })
	}
	if strings.Join(lines, "|") != "ab|cd|efgh|12345678" || over != 2 {
		t.Fatalf("lines %q overlong %d", lines, over)
	}
}

// TestOpenBySymlink: a /dev/serial/by-id style symlink to a pty opens, and
// reads what the device sends; the open error names the path.
func TestOpenBySymlink(t *testing.T) {
	path, dev := serialtest.NewPTY(t)
	link := filepath.Join(t.TempDir(), "usb-Prolific_PL2303-if00-port0")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	c := serialport.Defaults8N1(115200)
	c.Port = link
	p, err := serialport.Open(c)
	if err != nil {
		t.Fatal(err)
	}
	dev.Write([]byte("hello"))
	got := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var b []byte
		done <- serialport.ReadAll(ctx, p, link, func(c []byte) {
			b = append(b, c...)
			if len(b) == 5 {
				got <- string(b)
			}
		})
	}()
	select {
	case s := <-got:
		if s != "hello" {
			t.Fatalf("read %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing read")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ReadAll after cancel = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadAll did not return after cancel")
	}
	c.Port = filepath.Join(t.TempDir(), "gone")
	if _, err := serialport.Open(c); err == nil || !strings.Contains(err.Error(), c.Port) {
		t.Fatalf("open missing: %v", err)
	}
}

func TestCounters(t *testing.T) {
	var c serialport.Counters
	done := make(chan struct{})
	for range 4 {
		go func() {
			for range 1000 {
				c.Inc("bad")
			}
			done <- struct{}{}
		}()
	}
	for range 4 {
		<-done
	}
	if c.Get("bad") != 4000 || c.Stats()["bad"] != 4000 || c.Get("none") != 0 {
		t.Fatal(c.Stats())
	}

}
