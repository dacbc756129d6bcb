package devices

import (
	"sync"
	"time"
)

// Deduper suppresses repeats of the same identity within a window: RFID
// readers repeat a tag's frame for as long as the tag is held on them, and the
// user wants one reading per presentation. A repeat within the window also
// extends it, so a tag held for a minute is reported once; the same tag
// reported again after the window has passed (taken away and presented again)
// is a new reading. A zero window disables suppression.
type Deduper struct {
	Window time.Duration
	Now    func() time.Time // nil means time.Now; tests inject a clock

	mu   sync.Mutex
	last map[string]time.Time
}

// Seen reports whether id was seen within the window, and records it.
func (d *Deduper) Seen(id string) bool {
	if d.Window <= 0 {
		return false
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	t := now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		d.last = make(map[string]time.Time)
	}
	prev, ok := d.last[id]
	d.last[id] = t
	if len(d.last) > 1024 { // bound memory: forget entries past the window
		for k, v := range d.last {
			if t.Sub(v) > d.Window {
				delete(d.last, k)
			}
		}
	}
	return ok && t.Sub(prev) <= d.Window
}
