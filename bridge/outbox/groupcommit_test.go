package outbox

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestGroupCommitWindowedPublisher: a publisher that keeps a window of
// unacknowledged messages (as an MQTT client's in-flight window), with the
// link down and an hour-long commit interval, in fresh (fallocated)
// segments, is not held to the interval: each commit goes when its window
// is queued and the queue
// stops growing, and covers the whole window, so commits are about one
// per window (committing at commitEarlyBytes took two). Each message
// costs the publisher perMsg of work, as a broker's network read does:
// the committer is faster than the publisher, so the window is not all
// queued by the time the committer looks.
func TestGroupCommitWindowedPublisher(t *testing.T) {
	cases := []struct {
		name    string
		window  int // unacknowledged messages
		payload int
		windows int // how many windows' worth are sent
		perMsg  time.Duration
	}{
		// 500 x 100 B: about 56 KiB queued, past commitEarlyBytes; 20 us
		// a message, as make bench's saturation window (45k msg/s).
		{"500 of 100 B (make bench's saturation)", 500, 100, 40, 20 * time.Microsecond},
		// 100 x 1 KiB: about 100 KiB queued.
		{"100 of 1 KiB", 100, 1 << 10, 40, 50 * time.Microsecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			noPrefill = true
			defer func() { noPrefill = false }()
			o := openT(t, Options{Dir: t.TempDir(), CommitInterval: time.Hour})
			m := Message{Topic: "readings/door", QoS: 1, Payload: make([]byte, c.payload)}
			if !o.commitCostsJournal(1 << 10) {
				t.Fatal("a new outbox without prefill: commits into its fallocated segment should count as costing the journal")
			}
			if w := c.window * recordSize(&m); w <= o.commitEarly() || w >= o.commitCap() {
				t.Fatalf("window of %d B: want it between commitEarly (%d) and commitCap (%d)", w, o.commitEarly(), o.commitCap())
			}
			tokens := make(chan struct{}, c.window)
			for range c.window {
				tokens <- struct{}{}
			}
			total := c.window * c.windows
			var wg sync.WaitGroup
			wg.Add(total)
			var mu sync.Mutex
			var failed error
			perSync := map[uint64]int{} // messages completed after each sync count
			done := func(_ uint64, err error) {
				syncs := o.Stats().Fsyncs // done runs on the committer, after its pass's sync
				mu.Lock()
				if err != nil {
					failed = err
				}
				perSync[syncs]++
				mu.Unlock()
				tokens <- struct{}{}
				wg.Done()
			}
			before := o.Stats().Fsyncs
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			t0 := time.Now()
			for i := range total {
				select {
				case <-tokens:
				case <-ctx.Done():
					t.Fatalf("%d of %d messages sent in %v: the publisher is held (commit interval 1 h)", i, total, time.Since(t0))
				}
				for t1 := time.Now(); time.Since(t1) < c.perMsg; {
					// the publisher's work for one message (bounded)
				}
				if err := o.AppendAsync(ctx, m, done); err != nil {
					t.Fatal(err)
				}
			}
			// The last window is short of nothing to wait for: Close
			// commits it.
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			if failed != nil {
				t.Fatal(failed)
			}
			syncs := o.Stats().Fsyncs - before
			// The median commit covers most of a window: a publisher
			// descheduled for a gap under load splits a window now and
			// then (with two CPU burners the median was 3/4 of it);
			// committing at commitEarlyBytes split every one (a median
			// of half a window of 100 B messages, a third of 1 KiB ones).
			var sizes []int
			for _, n := range perSync {
				sizes = append(sizes, n)
			}
			slices.Sort(sizes)
			median := sizes[len(sizes)/2]
			if median < c.window*3/5 {
				t.Fatalf("median commit %d messages (of %d commits: %v), want at least 3/5 of the window of %d", median, len(sizes), sizes, c.window)
			}
			t.Logf("%d messages in %v, %d syncs for %d windows, median commit %d messages", total, time.Since(t0).Round(time.Millisecond), syncs, c.windows, median)
		})
	}
}

// TestGroupCommitSteadyStream: in fresh segments a steady stream past
// commitEarlyBytes keeps the queue growing, so it commits once per
// interval (not every commitEarlyBytes), and no message waits much longer
// than the interval.
func TestGroupCommitSteadyStream(t *testing.T) {
	const (
		interval = 400 * time.Millisecond
		pace     = 2 * time.Millisecond
		run      = 2400 * time.Millisecond
	)
	noPrefill = true
	defer func() { noPrefill = false }()
	o := openT(t, Options{Dir: t.TempDir(), CommitInterval: interval})
	m := Message{Topic: "readings/door", QoS: 1, Payload: make([]byte, 1<<10)}
	// 1 KiB every 2 ms: commitEarlyBytes are queued after about 64 ms.
	if per := int(interval/pace) * recordSize(&m); per <= o.commitEarly() || per >= o.commitCap() {
		t.Fatalf("an interval's %d B: want it between commitEarly (%d) and commitCap (%d)", per, o.commitEarly(), o.commitCap())
	}
	var mu sync.Mutex
	var worst time.Duration
	var failed error
	var wg sync.WaitGroup
	before := o.Stats().Fsyncs
	tick := time.NewTicker(pace)
	defer tick.Stop()
	n := 0
	for t0 := time.Now(); time.Since(t0) < run; n++ {
		<-tick.C
		at := time.Now()
		wg.Add(1)
		if err := o.AppendAsync(context.Background(), m, func(_ uint64, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = err
			}
			worst = max(worst, time.Since(at))
			wg.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatalf("messages of a steady stream not durable 10 s after the last (interval %v)", interval)
	}
	syncs := o.Stats().Fsyncs - before
	mu.Lock()
	defer mu.Unlock()
	if failed != nil {
		t.Fatal(failed)
	}
	// The bound: an interval for the commit, one for the tail page that
	// waits for its oldest record's deadline, and slack for a loaded
	// machine.
	if limit := 2*interval + time.Second; worst > limit {
		t.Fatalf("a message waited %v for durability, want at most %v (interval %v)", worst, limit, interval)
	}
	// About one commit per interval; committing at commitEarlyBytes made
	// one every 64 ms (37 in the run). Slack: a tick late by more than a
	// gap (8 ms) under load ends a wait early.
	if limit := uint64(2*run/interval + 2); syncs > limit {
		t.Fatalf("%d syncs for %d messages over %v, want at most %d (about one per %v)", syncs, n, run, limit, interval)
	}
	t.Logf("%d messages, %d syncs, worst wait %v", n, syncs, worst.Round(time.Millisecond))
}

// TestCommitCostsJournal: group commit waits only where a commit costs the
// journal: in a fallocated segment, or an earlier run's whose blocks are
// not known; a prefilled or recycled spare's blocks are written already,
// and there a commit goes at commitEarlyBytes.
func TestCommitCostsJournal(t *testing.T) {
	const seg = 256 << 10
	fill := func(t *testing.T, o *Outbox, n int) {
		t.Helper()
		m := Message{Topic: "t", QoS: 1, Payload: make([]byte, 1000)}
		for range n {
			if _, err := o.Append(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name    string
		prefill bool
		prepare func(t *testing.T, dir string) // before the measured Open
		want    bool
	}{
		{"new outbox, prefilled", true, nil, false},
		{"new outbox, no prefill (fallocated)", false, nil, true},
		{"reopened: an earlier run's segment", true, func(t *testing.T, dir string) {
			o, err := Open(Options{Dir: dir, CommitInterval: time.Millisecond, SegmentBytes: seg})
			if err != nil {
				t.Fatal(err)
			}
			fill(t, o, 10)
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			noPrefill = !c.prefill
			defer func() { noPrefill = false }()
			dir := t.TempDir()
			if c.prepare != nil {
				c.prepare(t, dir)
			}
			o := openT(t, Options{Dir: dir, CommitInterval: time.Millisecond, SegmentBytes: seg})
			if got := o.commitCostsJournal(1 << 10); got != c.want {
				t.Fatalf("commitCostsJournal = %v, want %v", got, c.want)
			}
			if !c.prefill || c.prepare != nil {
				return
			}
			// Past the prefilled segment and its two spares: a new,
			// fallocated segment.
			fill(t, o, (maxSpares+1)*seg/1000+10)
			if got := o.commitCostsJournal(1 << 10); !got {
				t.Fatalf("after %d prefilled segments: commitCostsJournal = false, want true", maxSpares+1)
			}
		})
	}
}
