package devices

import (
	"fmt"
	"sort"
	"sync"
)

// Decoder fills a driver's own configuration struct from the device's
// `[[device]]` table. It reports a wrong type with the key's position. Keys
// that no decode consumes are reported by the config loader as unknown.
type Decoder func(v any) error

// Constructor builds a Device from its configuration. It validates the
// configuration (returning errors that name the key and what is allowed)
// but does no I/O: ports and buses are opened in Run.
type Constructor func(env Env, decode Decoder) (Device, error)

// Driver describes one registered device type.
type Driver struct {
	Type string
	// Summary is one line for `edgegw devices` and the README table.
	Summary string
	New     Constructor
}

var (
	mu      sync.RWMutex
	drivers = map[string]Driver{}
)

// Register adds a driver. It is called from a driver package's init and
// panics on a duplicate type, which is a programming error.
func Register(d Driver) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := drivers[d.Type]; dup {
		panic(fmt.Sprintf("devices: driver %q registered twice", d.Type))
	}
	drivers[d.Type] = d
}

// Lookup returns the driver for a type.
func Lookup(typ string) (Driver, bool) {
	mu.RLock()
	defer mu.RUnlock()
	d, ok := drivers[typ]
	return d, ok
}

// Types lists the registered types in order.
func Types() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(drivers))
	for t := range drivers {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
