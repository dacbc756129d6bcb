package gateway

import (
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgegw/edgegw/devices"
)

// testClock is a board without a battery: its wall clock starts at a stale
// time and jumps when "NTP" syncs; its monotonic clock only moves forward.
type testClock struct {
	mu     sync.Mutex
	wall   time.Time
	mono   time.Duration
	synced bool
}

func (c *testClock) Now() (time.Time, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall, c.mono
}

func (c *testClock) Synced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.synced
}

// advance moves both clocks by d, as time passing does.
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.wall = c.wall.Add(d)
	c.mono += d
	c.mu.Unlock()
}

// sync steps the wall clock to t and marks it synchronised, as
// systemd-timesyncd does on its first answer.
func (c *testClock) sync(t time.Time) {
	c.mu.Lock()
	c.wall, c.synced = t, true
	c.mu.Unlock()
}

func TestStampClockMarksReadingsUntilSync(t *testing.T) {
	stale := time.Date(2023, 4, 1, 10, 0, 0, 0, time.UTC) // fake-hwclock's last save
	real := time.Date(2026, 11, 22, 1, 30, 0, 0, time.UTC)
	tc := &testClock{wall: stale, mono: 5 * time.Second}
	var logs syncBuf
	c := newStampClock(tc, slog.New(slog.NewTextHandler(&logs, nil)))

	type step struct {
		name          string
		do            func()
		given         time.Time
		wantTS        time.Time
		wantUncertain bool
	}
	steps := []step{
		{"boot, stale clock", func() {}, time.Time{}, stale, true},
		{"a second later, still unsynced", func() { tc.advance(time.Second) }, time.Time{}, stale.Add(time.Second), true},
		{"driver's own time, unsynced", func() { tc.advance(2 * time.Second) }, stale.Add(2500 * time.Millisecond), stale.Add(2500 * time.Millisecond), true},
		{"NTP steps the clock forward", func() { tc.sync(real) }, time.Time{}, real, false},
		{"time passes, synced", func() { tc.advance(1500 * time.Millisecond) }, time.Time{}, real.Add(1500 * time.Millisecond), false},
	}
	for _, s := range steps {
		s.do()
		ts, unc := c.stamp(s.given)
		if !ts.Equal(s.wantTS) || unc != s.wantUncertain {
			t.Errorf("%s: stamp = %s uncertain=%v, want %s uncertain=%v", s.name, ts, unc, s.wantTS, s.wantUncertain)
		}
	}
	if got := c.steps.Load(); got != 1 {
		t.Errorf("steps = %d, want 1 (the sync)", got)
	}
	if got := c.uncertain.Load(); got != 3 {
		t.Errorf("uncertain readings = %d, want 3", got)
	}
	l := logs.String()
	for _, want := range []string{"not synchronised", "wall clock stepped", "step=", "synchronised; readings carry trusted times"} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
}

func TestStampClockStepBackAndSlew(t *testing.T) {
	start := time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC)
	tc := &testClock{wall: start, synced: true}
	c := newStampClock(tc, slog.New(slog.DiscardHandler))
	// A slew of 200ms over a minute is NTP doing its job, not a step.
	tc.advance(time.Minute)
	tc.mu.Lock()
	tc.wall = tc.wall.Add(200 * time.Millisecond)
	tc.mu.Unlock()
	if _, unc := c.stamp(time.Time{}); unc {
		t.Error("synced clock marked uncertain")
	}
	if c.steps.Load() != 0 {
		t.Errorf("a 200ms slew counted as a step")
	}
	// Someone runs date -s an hour back.
	tc.mu.Lock()
	tc.wall = tc.wall.Add(-time.Hour)
	tc.mu.Unlock()
	c.stamp(time.Time{})
	if c.steps.Load() != 1 {
		t.Errorf("a step back of an hour was not counted")
	}
}

func TestTrustedClockNeverFlags(t *testing.T) {
	c := newStampClock(trustedClock{}, slog.New(slog.DiscardHandler))
	if _, unc := c.stamp(time.Time{}); unc {
		t.Error(`clock = "trusted" flagged a reading`)
	}
}

func TestPayloadTSUncertain(t *testing.T) {
	ts := time.Date(2023, 4, 1, 10, 0, 0, 0, time.UTC)
	for _, unc := range []bool{false, true} {
		b := encodeReading(nil, "gw", "door", "rdm6300", 7, ts, unc, devices.Reading{UID: "0A00C1F2E3"})
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("payload %s: %v", b, err)
		}
		v, ok := m["ts_uncertain"]
		if unc && v != true {
			t.Errorf("uncertain reading: ts_uncertain = %v in %s", v, b)
		}
		if !unc && ok {
			t.Errorf("certain reading carries ts_uncertain: %s", b)
		}
		if m["ts"] != "2023-04-01T10:00:00.000Z" {
			t.Errorf("ts = %v", m["ts"])
		}
	}
}
