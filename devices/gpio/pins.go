// Package gpio holds the GPIO drivers gpio_in (door contacts, PIR sensors,
// buttons) and gpio_out (relays, door strikes, LEDs), and the pin helpers the
// other header-attached drivers (wiegand, mfrc522) share: periph's host
// initialisation and pin lookup by board header name.
//
// Pins are looked up by name in periph's registry (gpioreg) after the board
// profile maps a header position to its line name (P1_11 → GPIO17, see
// package boards). On Linux periph serves them through the GPIO character
// device (/dev/gpiochipN) or sysfs.
package gpio

import (
	"fmt"
	"strings"
	"sync"
	"time"

	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"

	"github.com/edgegw/edgegw/boards"
)

var (
	initOnce sync.Once
	initErr  error
)

// HostInit initialises periph's host drivers once per process. On a machine
// without GPIO it succeeds with no drivers loaded; pins registered by tests
// stay visible.
func HostInit() error {
	initOnce.Do(func() {
		if _, err := host.Init(); err != nil {
			initErr = fmt.Errorf("gpio: periph host init: %w", err)
		}
	})
	return initErr
}

// ResolvePin checks a configured pin name against the board profile without
// any I/O, for constructors: key is the configuration key reported in the
// error ("pin", "d0", …).
func ResolvePin(key, board, name string) (string, error) {
	if strings.TrimSpace(name) == "" {
		return "", fmt.Errorf("%s: missing; name a header position such as \"P1_11\" or a line name such as \"GPIO17\"", key)
	}
	line, err := boards.ResolvePin(board, name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return line, nil
}

// OpenPin initialises the host and looks up a resolved line name. The error
// says which pin and what to check.
func OpenPin(key, line string) (pgpio.PinIO, error) {
	if err := HostInit(); err != nil {
		return nil, err
	}
	p := gpioreg.ByName(line)
	if p == nil {
		return nil, fmt.Errorf("gpio: %s: no GPIO line named %q on this host (is /dev/gpiochip* present and readable, and the pin free?)", key, line)
	}
	return zeroSafe{p}, nil
}

// ParsePull maps "up", "down", "none" ("" means def) to periph's pull.
func ParsePull(key, s string, def pgpio.Pull) (pgpio.Pull, error) {
	switch strings.ToLower(s) {
	case "":
		return def, nil
	case "up":
		return pgpio.PullUp, nil
	case "down":
		return pgpio.PullDown, nil
	case "none", "float", "off":
		return pgpio.Float, nil
	}
	return 0, fmt.Errorf("%s: %q is not a pull; use \"up\", \"down\" or \"none\"", key, s)
}

func levelName(l pgpio.Level) string {
	if l {
		return "high"
	}
	return "low"
}

// zeroSafe keeps periph's WaitForEdge contract (0 returns at once, -1 waits
// forever) on drivers that read 0 as "forever", as the GPIO character device
// driver (gpioioctl) of periph host v3.8.5 does. Callers that hand a pin to
// a periph device driver (mfrc522 polls its IRQ pin with WaitForEdge(0))
// would otherwise block.
type zeroSafe struct{ pgpio.PinIO }

// WaitForEdge implements gpio.PinIn.
func (z zeroSafe) WaitForEdge(timeout time.Duration) bool {
	if timeout == 0 {
		timeout = time.Microsecond
	}
	return z.PinIO.WaitForEdge(timeout)
}

// Real implements gpio.RealPin, so callers can still reach the line itself.
func (z zeroSafe) Real() pgpio.PinIO { return z.PinIO }
