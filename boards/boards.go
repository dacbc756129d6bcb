// Package boards describes the single-board computers edgegw runs on: the Go
// architecture to build for, the serial, I²C and SPI device names, and the
// GPIO header (header position such as P1_11 → line name such as GPIO17 →
// gpiochip and line offset). Drivers use it to accept header names in
// configuration; `edgegw boards` lists the profiles.
//
// The package does no I/O except ReadModel, which reads the device-tree model
// string that Detect matches.
package boards

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

// Arch is one Go build target a board runs.
type Arch struct {
	GOARCH string // "arm" or "arm64"
	GOARM  string // "6" or "7" when GOARCH is "arm"; empty for arm64
}

// String names the target as the release binaries do: armv6, armv7, arm64.
func (a Arch) String() string {
	if a.GOARCH == "arm" {
		return "armv" + a.GOARM
	}
	return a.GOARCH
}

// Port is a serial port, I²C bus or SPI device node as the kernel names it.
type Port struct {
	Path string // e.g. "/dev/serial0", "/dev/i2c-1", "/dev/spidev0.0"
	Pins string // header pins it uses, e.g. "TX P1_8, RX P1_10"
	Note string // when it is there (overlay, kernel version), what it is
}

// Chip is a GPIO controller as the character device shows it.
type Chip struct {
	Name  string // "gpiochip0"
	Label string // what gpiodetect prints, e.g. "pinctrl-bcm2711"
	Lines int    // number of lines
	Note  string
}

// Pin is one GPIO on the board's header.
type Pin struct {
	Header string // header position, e.g. "P1_11", "P9_12"
	GPIO   string // the line name periph resolves, e.g. "GPIO17", "PA12"
	Chip   string // the gpiochip carrying the line
	Line   int    // offset on Chip
	Func   string // the alternate function on the header, e.g. "I2C1_SDA"; may be empty
}

// Board is one board profile.
type Board struct {
	Name   string   // short name used in configuration, e.g. "rpi4"
	Title  string   // e.g. "Raspberry Pi 4 Model B"
	Models []string // device-tree model strings (without " Rev x.y") that identify it
	SoC    string
	Arch   []Arch // preferred first
	Serial []Port
	I2C    []Port
	SPI    []Port
	Chips  []Chip
	Pins   []Pin
	Notes  string
}

// All returns every profile, sorted by name. The slices inside are shared;
// callers must not modify them.
func All() []Board {
	out := make([]Board, len(profiles))
	copy(out, profiles)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names lists the profile names, sorted.
func Names() []string {
	all := All()
	out := make([]string, len(all))
	for i, b := range all {
		out[i] = b.Name
	}
	return out
}

// ByName returns the profile with the given name (case-insensitive).
func ByName(name string) (Board, bool) {
	for _, b := range profiles {
		if strings.EqualFold(b.Name, name) {
			return b, true
		}
	}
	return Board{}, false
}

// Detect finds the profile for a device-tree model string, as read from
// /proc/device-tree/model (a trailing NUL and white space are ignored). A
// model matches when it equals one of the profile's Models or continues it
// with " Rev …" (Raspberry Pi firmware adds the board revision), so
// "Raspberry Pi Zero 2 W Rev 1.0" does not match the Zero W profile and
// "Xunlong Orange Pi Zero Plus" (an H5 board) does not match the Orange Pi
// Zero.
func Detect(model string) (Board, bool) {
	model = strings.TrimSpace(strings.TrimRight(model, "\x00"))
	for _, b := range profiles {
		for _, m := range b.Models {
			if model == m || strings.HasPrefix(model, m+" Rev ") {
				return b, true
			}
		}
	}
	return Board{}, false
}

// ModelPath is where the kernel exposes the device-tree model string.
const ModelPath = "/proc/device-tree/model"

// ReadModel reads the device-tree model string from path (ModelPath on a
// board), without its trailing NUL.
func ReadModel(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("boards: read model: %w", err)
	}
	return strings.TrimSpace(strings.TrimRight(string(b), "\x00")), nil
}

// Pin returns the header pin named by its header position ("P1_11") or its
// line name ("GPIO17"), case-insensitive.
func (b Board) Pin(name string) (Pin, bool) {
	for _, p := range b.Pins {
		if strings.EqualFold(p.Header, name) || strings.EqualFold(p.GPIO, name) {
			return p, true
		}
	}
	return Pin{}, false
}

// Resolve maps a configured pin name to the line name to look up in periph's
// GPIO registry: a header position becomes its line name ("P1_11" →
// "GPIO17"); a line name of this board is returned in its canonical case; any
// other name is returned unchanged, so boards without a profile still work
// with the kernel's own line names.
func (b Board) Resolve(name string) string {
	if p, ok := b.Pin(name); ok {
		return p.GPIO
	}
	return name
}

// ResolvePin resolves name on the board called board ("" or an unknown board
// leaves the name unchanged). It reports an error when the name looks like a
// header position (P1_x, P8_x, P9_x) that the board does not have, so a typo
// is caught when the configuration is loaded rather than at the first read.
func ResolvePin(board, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("boards: empty pin name")
	}
	b, ok := ByName(board)
	if !ok {
		return name, nil
	}
	if p, ok := b.Pin(name); ok {
		return p.GPIO, nil
	}
	if looksLikeHeader(name) {
		return "", fmt.Errorf("boards: %s has no GPIO at header position %q; see 'edgegw boards %s'", b.Title, name, b.Name)
	}
	return name, nil
}

func looksLikeHeader(name string) bool {
	u := strings.ToUpper(name)
	for _, h := range []string{"P1_", "P8_", "P9_"} {
		if strings.HasPrefix(u, h) && len(u) > len(h) {
			return true
		}
	}
	return false
}
