package serialport

import (
	"sync"
	"sync/atomic"

	"github.com/edgegw/edgegw/devices"
)

// Counters counts events by reason ("bad_checksum", "noise_bytes", …). The
// zero value is ready to use and safe for concurrent use; Add is lock-free
// once a reason has been seen.
type Counters struct {
	m sync.Map // reason → *atomic.Uint64
}

// Add adds n to reason.
func (c *Counters) Add(reason string, n uint64) {
	v, ok := c.m.Load(reason)
	if !ok {
		v, _ = c.m.LoadOrStore(reason, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(n)
}

// Inc adds one to reason.
func (c *Counters) Inc(reason string) { c.Add(reason, 1) }

// Get returns the count of reason.
func (c *Counters) Get(reason string) uint64 {
	if v, ok := c.m.Load(reason); ok {
		return v.(*atomic.Uint64).Load()
	}
	return 0
}

// Stats returns a snapshot of every count.
func (c *Counters) Stats() devices.Stats {
	s := devices.Stats{}
	c.m.Range(func(k, v any) bool {
		s[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return s
}
