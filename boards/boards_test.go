package boards

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var headerRE = regexp.MustCompile(`^P(1|8|9)_([0-9]+)$`)

// TestProfilesConsistent checks every profile against itself: unique names,
// valid Go targets, ports present and unique, header positions that exist on
// the header, lines within their chip, and every header pin a port mentions
// known to the profile.
func TestProfilesConsistent(t *testing.T) {
	all := All()
	if len(all) < 7 {
		t.Fatalf("want at least 7 profiles, got %d", len(all))
	}
	names := map[string]bool{}
	models := map[string]string{}
	for _, b := range all {
		t.Run(b.Name, func(t *testing.T) {
			if b.Name == "" || b.Title == "" || b.SoC == "" {
				t.Fatalf("name/title/soc missing: %+v", b)
			}
			if names[strings.ToLower(b.Name)] {
				t.Fatalf("duplicate profile name %q", b.Name)
			}
			names[strings.ToLower(b.Name)] = true
			if len(b.Models) == 0 {
				t.Fatal("no device-tree models")
			}
			for _, m := range b.Models {
				if other, dup := models[m]; dup {
					t.Errorf("model %q claimed by %s and %s", m, other, b.Name)
				}
				models[m] = b.Name
				if got, ok := Detect(m); !ok || got.Name != b.Name {
					t.Errorf("Detect(%q) = %q, %v; want %s", m, got.Name, ok, b.Name)
				}
			}
			if len(b.Arch) == 0 {
				t.Fatal("no arch")
			}
			for _, a := range b.Arch {
				switch {
				case a.GOARCH == "arm" && (a.GOARM == "6" || a.GOARM == "7"):
				case a.GOARCH == "arm64" && a.GOARM == "":
				default:
					t.Errorf("invalid arch %+v", a)
				}
			}
			for kind, ports := range map[string][]Port{"serial": b.Serial, "i2c": b.I2C, "spi": b.SPI} {
				if len(ports) == 0 {
					t.Errorf("no %s ports", kind)
				}
				seen := map[string]bool{}
				for _, p := range ports {
					if !strings.HasPrefix(p.Path, "/dev/") {
						t.Errorf("%s port %q is not a /dev path", kind, p.Path)
					}
					if seen[p.Path] {
						t.Errorf("duplicate %s port %q", kind, p.Path)
					}
					seen[p.Path] = true
					switch kind {
					case "i2c":
						if !regexp.MustCompile(`^/dev/i2c-[0-9]+$`).MatchString(p.Path) {
							t.Errorf("i2c bus %q", p.Path)
						}
					case "spi":
						if !regexp.MustCompile(`^/dev/spidev[0-9]+\.[0-9]+$`).MatchString(p.Path) {
							t.Errorf("spi device %q", p.Path)
						}
					case "serial":
						if !regexp.MustCompile(`^/dev/(serial[0-9]|tty(S|AMA|O)[0-9]+)$`).MatchString(p.Path) {
							t.Errorf("serial port %q", p.Path)
						}
					}
					for _, h := range regexp.MustCompile(`P[0-9]_[0-9]+`).FindAllString(p.Pins, -1) {
						if _, ok := b.Pin(h); !ok {
							t.Errorf("%s port %s uses header pin %s, which the profile lacks", kind, p.Path, h)
						}
					}
				}
			}
			chips := map[string]Chip{}
			for _, c := range b.Chips {
				if !regexp.MustCompile(`^gpiochip[0-9]+$`).MatchString(c.Name) || c.Lines <= 0 {
					t.Errorf("bad chip %+v", c)
				}
				chips[c.Name] = c
			}
			if len(b.Pins) == 0 {
				t.Fatal("no pins")
			}
			headers, gpios, lines := map[string]bool{}, map[string]bool{}, map[string]bool{}
			maxPos := map[string]int{"P1": 40, "P8": 46, "P9": 46}
			for _, p := range b.Pins {
				m := headerRE.FindStringSubmatch(p.Header)
				if m == nil {
					t.Errorf("header name %q", p.Header)
					continue
				}
				pos := 0
				for _, c := range m[2] {
					pos = pos*10 + int(c-'0')
				}
				if pos < 1 || pos > maxPos["P"+m[1]] {
					t.Errorf("%s: position out of range", p.Header)
				}
				if headers[p.Header] || gpios[p.GPIO] {
					t.Errorf("duplicate pin %s / %s", p.Header, p.GPIO)
				}
				headers[p.Header], gpios[p.GPIO] = true, true
				c, ok := chips[p.Chip]
				if !ok {
					t.Errorf("%s: chip %q not in the profile", p.Header, p.Chip)
				} else if p.Line < 0 || p.Line >= c.Lines {
					t.Errorf("%s: line %d outside %s (%d lines)", p.Header, p.Line, p.Chip, c.Lines)
				}
				key := fmt.Sprintf("%s/%d", p.Chip, p.Line)
				if lines[key] {
					t.Errorf("%s: line %s/%d used twice", p.Header, p.Chip, p.Line)
				}
				lines[key] = true
				if headers[p.GPIO] {
					t.Errorf("%s: a line name equals a header name", p.GPIO)
				}
			}
		})
	}
}

// TestKnownPins pins a few mappings from the boards' reference manuals so a
// table shuffle cannot go unnoticed.
func TestKnownPins(t *testing.T) {
	cases := []struct {
		board, name, gpio, chip string
		line                    int
	}{
		{"rpi-zero-w", "P1_11", "GPIO17", "gpiochip0", 17},
		{"rpi4", "P1_3", "GPIO2", "gpiochip0", 2},
		{"rpi4", "p1_40", "GPIO21", "gpiochip0", 21},
		{"rpi5", "P1_7", "GPIO4", "gpiochip0", 4},
		{"rpi3", "GPIO25", "GPIO25", "gpiochip0", 25},
		{"bbb", "P9_12", "GPIO60", "gpiochip1", 28},
		{"bbb", "P8_7", "GPIO66", "gpiochip2", 2},
		{"bbb", "P9_25", "GPIO117", "gpiochip3", 21},
		{"orangepi-zero", "P1_8", "PG6", "gpiochip0", 198},
		{"orangepi-zero", "P1_3", "PA12", "gpiochip0", 12},
	}
	for _, c := range cases {
		b, ok := ByName(c.board)
		if !ok {
			t.Fatalf("no board %s", c.board)
		}
		p, ok := b.Pin(c.name)
		if !ok || p.GPIO != c.gpio || p.Chip != c.chip || p.Line != c.line {
			t.Errorf("%s %s = %+v, %v; want %s %s/%d", c.board, c.name, p, ok, c.gpio, c.chip, c.line)
		}
	}
	// 28 GPIOs on every Pi's 40-pin header, GPIO0..GPIO27.
	for _, n := range []string{"rpi-zero-w", "rpi-zero-2w", "rpi3", "rpi4", "rpi5"} {
		b, _ := ByName(n)
		if len(b.Pins) != 28 {
			t.Errorf("%s: %d header GPIOs, want 28", n, len(b.Pins))
		}
	}
}

// TestDetect feeds real /proc/device-tree/model contents, NUL included.
func TestDetect(t *testing.T) {
	cases := []struct{ model, want string }{
		{"Raspberry Pi Zero W Rev 1.1\x00", "rpi-zero-w"},
		{"Raspberry Pi Zero Rev 1.3\x00", "rpi-zero-w"},
		{"Raspberry Pi Zero 2 W Rev 1.0\x00", "rpi-zero-2w"},
		{"Raspberry Pi Zero 2 W\x00", "rpi-zero-2w"}, // mainline kernel
		{"Raspberry Pi 3 Model B Rev 1.2\x00", "rpi3"},
		{"Raspberry Pi 3 Model B Plus Rev 1.3\x00", "rpi3"},
		{"Raspberry Pi 3 Model B+\x00", "rpi3"}, // mainline kernel
		{"Raspberry Pi 4 Model B Rev 1.4\x00", "rpi4"},
		{"Raspberry Pi 4 Model B Rev 1.2\x00", "rpi4"},
		{"Raspberry Pi 5 Model B Rev 1.0\x00", "rpi5"},
		{"TI AM335x BeagleBone Black\x00", "bbb"},
		{"TI AM335x BeagleBone Black Wireless\x00", "bbb"},
		{"Xunlong Orange Pi Zero\x00", "orangepi-zero"},
		{"Xunlong Orange Pi Zero Lts\x00", "orangepi-zero"},
		// Look-alikes that must not match.
		{"Xunlong Orange Pi Zero Plus\x00", ""},
		{"Xunlong Orange Pi Zero2\x00", ""},
		{"Raspberry Pi 500 Rev 1.0\x00", ""},
		{"Raspberry Pi Compute Module 4 Rev 1.0\x00", ""},
		{"Raspberry Pi 2 Model B Rev 1.1\x00", ""},
		{"TI AM335x BeagleBone Green\x00", ""},
		{"", ""},
	}
	for _, c := range cases {
		b, ok := Detect(c.model)
		if c.want == "" {
			if ok {
				t.Errorf("Detect(%q) = %s; want no match", c.model, b.Name)
			}
			continue
		}
		if !ok || b.Name != c.want {
			t.Errorf("Detect(%q) = %q, %v; want %s", c.model, b.Name, ok, c.want)
		}
	}
}

func TestReadModel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "model")
	if err := os.WriteFile(p, []byte("Raspberry Pi 4 Model B Rev 1.4\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := ReadModel(p)
	if err != nil || m != "Raspberry Pi 4 Model B Rev 1.4" {
		t.Fatalf("ReadModel = %q, %v", m, err)
	}
	if _, err := ReadModel(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "boards: read model") {
		t.Fatalf("missing file: err = %v", err)
	}
}

func TestResolvePin(t *testing.T) {
	cases := []struct {
		board, name, want, err string
	}{
		{"rpi4", "P1_11", "GPIO17", ""},
		{"rpi4", "gpio17", "GPIO17", ""},
		{"rpi4", "P1_1", "", "no GPIO at header position"}, // 3.3 V, not a GPIO
		{"rpi4", "P1_41", "", "no GPIO at header position"},
		{"rpi4", "TEST_PIN", "TEST_PIN", ""}, // kernel line names pass through
		{"bbb", "P9_12", "GPIO60", ""},
		{"", "P1_11", "P1_11", ""}, // unknown board: periph's own aliases decide
		{"rpi4", "", "", "empty pin name"},
	}
	for _, c := range cases {
		got, err := ResolvePin(c.board, c.name)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ResolvePin(%q, %q) err = %v; want %q", c.board, c.name, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ResolvePin(%q, %q) = %q, %v; want %q", c.board, c.name, got, err, c.want)
		}
	}
}
