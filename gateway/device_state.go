package gateway

import (
	"sync"
	"time"
)

// onlineAfter is how long a driver must run without failing to count as
// online before its first reading: an RFID reader with its port open is
// online though no tag came by.
const onlineAfter = time.Second

// deviceAvailability turns a device's runs and readings into online/offline
// changes for the availability announcer: online when it reads or has run
// onlineAfter without failing, offline when it fails.
type deviceAvailability struct {
	notify func(up bool) // nil: availability is off

	mu    sync.Mutex
	state int // 0 unknown, 1 online, 2 offline
	gen   uint64
}

// set records a state and notifies a change.
func (a *deviceAvailability) set(up bool) {
	if a.notify == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.setLocked(up)
}

func (a *deviceAvailability) setLocked(up bool) {
	st := 2
	if up {
		st = 1
	}
	if a.state == st {
		return
	}
	a.state = st
	a.notify(up)
}

// running is called when a run of the driver starts; the function it
// returns, when that run ends.
func (a *deviceAvailability) running() (ended func()) {
	if a.notify == nil {
		return func() {}
	}
	a.mu.Lock()
	a.gen++
	gen := a.gen
	a.mu.Unlock()
	t := time.AfterFunc(onlineAfter, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.gen == gen {
			a.setLocked(true)
		}
	})
	return func() {
		t.Stop()
		a.mu.Lock()
		a.gen++
		a.mu.Unlock()
	}
}
