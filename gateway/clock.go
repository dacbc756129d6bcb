package gateway

import (
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Clocks without a battery. Most Pis have no real-time clock: they boot with
// the time they last saved (fake-hwclock) or 1970, and the wall clock jumps
// when NTP syncs. The choice (docs/board.md):
//
//   - Every reading is stamped from the wall clock, as before, but while the
//     kernel says the clock is not synchronised (adjtimex: STA_UNSYNC or
//     TIME_ERROR; or systemd-timesyncd has not written
//     /run/systemd/timesync/synchronized) the payload carries
//     "ts_uncertain": true. A consumer can then use its arrival time or
//     discard the stamp; nothing wrong passes silently.
//   - Stamps already in the outbox are not rewritten: the outbox is an
//     append-only log with checksums, and rewriting it would trade the
//     delivery guarantees for cosmetics. The flag travels with them instead.
//   - A step of the wall clock (sync, or `date -s`) is detected by comparing
//     it with the monotonic clock; it is logged once with its size and
//     counted (edgegw_clock_steps_total).

// clockSource reads the clocks; tests inject one that jumps.
type clockSource interface {
	// Now returns the wall time and a monotonic reading (any origin).
	Now() (wall time.Time, mono time.Duration)
	// Synced reports whether the wall clock is known to be right.
	Synced() bool
}

// systemClock is the real clock: time.Now and the kernel's sync status.
type systemClock struct{}

var monoOrigin = time.Now()

func (systemClock) Now() (time.Time, time.Duration) {
	now := time.Now()
	return now.Round(0), now.Sub(monoOrigin)
}

// Synced asks the kernel (adjtimex with no changes, allowed unprivileged),
// then systemd-timesyncd's flag file.
func (systemClock) Synced() bool {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err == nil && state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0 {
		return true
	}
	_, ferr := os.Stat("/run/systemd/timesync/synchronized")
	return ferr == nil
}

// trustedClock is the system clock declared right by the operator
// ([gateway] clock = "trusted": an RTC and no network time).
type trustedClock struct{ systemClock }

func (trustedClock) Synced() bool { return true }

// stepThreshold is how far wall and monotonic time may drift apart before
// it counts as a step (NTP slews smaller errors gradually).
const stepThreshold = time.Second

// syncCheckEvery bounds how often Synced is asked.
const syncCheckEvery = time.Second

// stampClock stamps readings.
type stampClock struct {
	src clockSource
	log *slog.Logger

	mu        sync.Mutex
	baseWall  time.Time
	baseMono  time.Duration
	synced    bool
	checkedAt time.Duration
	checked   bool
	recheck   bool

	steps     atomic.Uint64
	uncertain atomic.Uint64
}

func newStampClock(src clockSource, log *slog.Logger) *stampClock {
	c := &stampClock{src: src, log: log}
	c.baseWall, c.baseMono = src.Now()
	return c
}

// stamp returns the time for a reading and whether it is uncertain. given is
// the driver's own time for the observation (zero = now).
func (c *stampClock) stamp(given time.Time) (time.Time, bool) {
	wall, mono := c.src.Now()
	c.mu.Lock()
	// A step: the wall clock moved by more than the monotonic clock did.
	want := c.baseWall.Add(mono - c.baseMono)
	if d := wall.Sub(want); d > stepThreshold || d < -stepThreshold {
		c.steps.Add(1)
		c.log.Warn("the wall clock stepped; readings stamped before it may carry the old time (they are marked ts_uncertain if the clock was not synchronised)", "step", d.Round(time.Millisecond), "now", wall.UTC().Format(time.RFC3339))
		c.recheck = true // ask again now: a step is usually the sync
	}
	c.baseWall, c.baseMono = wall, mono
	if !c.checked || c.recheck || mono-c.checkedAt >= syncCheckEvery {
		was, first := c.synced, !c.checked
		c.synced = c.src.Synced()
		c.checked, c.recheck, c.checkedAt = true, false, mono
		switch {
		case first && !c.synced:
			c.log.Warn("the system clock is not synchronised (no RTC, or NTP has not synced yet); readings are marked \"ts_uncertain\": true until it is")
		case !first && c.synced != was && c.synced:
			c.log.Info("the system clock is synchronised; readings carry trusted times again")
		case !first && c.synced != was:
			c.log.Warn("the system clock lost synchronisation; readings are marked \"ts_uncertain\": true")
		}
	}
	synced := c.synced
	c.mu.Unlock()
	ts := given
	if ts.IsZero() {
		ts = wall
	}
	if !synced {
		c.uncertain.Add(1)
	}
	return ts, !synced
}
