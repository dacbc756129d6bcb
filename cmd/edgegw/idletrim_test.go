package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// TestIdleTrimPolicy: when an idle gateway trims again. Each step is one
// check: busy or not, the resident KiB, the seconds since the start; want
// is whether it trims (and a trim leaves after KiB).
func TestIdleTrimPolicy(t *testing.T) {
	type check struct {
		busy  bool
		kib   int
		at    int // seconds after the start
		want  bool
		after int // resident after the trim, when want
	}
	cases := []struct {
		name   string
		checks []check
	}{
		{"idle and grown by 512 KiB: trimmed at the next check", []check{
			{false, 8000, 1, false, 0}, {false, 8512, 2, true, 7900},
		}},
		{"idle but grown by less: never trimmed", []check{
			{false, 8511, 1, false, 0}, {false, 8300, 2, false, 0}, {false, 8511, 30, false, 0},
		}},
		{"busy: never trimmed, however much it grew", []check{
			{true, 20000, 1, false, 0}, {true, 20000, 2, false, 0}, {true, 20000, 3, false, 0},
		}},
		{"busy then idle: trimmed at the first idle check", []check{
			{true, 12000, 1, false, 0}, {true, 12000, 2, false, 0}, {false, 12000, 3, true, 7800},
		}},
		{"idle work that keeps bringing memory back: the gap doubles (1, 2, 4, 8 s)", []check{
			{false, 9000, 1, true, 8000},
			{false, 9000, 2, false, 0}, {false, 9000, 3, true, 8000},
			{false, 9000, 4, false, 0}, {false, 9000, 6, false, 0}, {false, 9000, 7, true, 8000},
			{false, 9000, 14, false, 0}, {false, 9000, 15, true, 8000},
		}},
		{"a busy check in between sets the gap back to one check", []check{
			{false, 9000, 1, true, 8000}, {false, 9000, 2, false, 0}, {false, 9000, 3, true, 8000},
			{true, 9000, 4, false, 0}, {false, 9000, 5, true, 8000},
		}},
		{"the gap stops doubling at the maximum (8 s here)", []check{
			{false, 9000, 1, true, 8000}, {false, 9000, 3, true, 8000}, {false, 9000, 7, true, 8000},
			{false, 9000, 15, true, 8000}, {false, 9000, 22, false, 0}, {false, 9000, 23, true, 8000},
			{false, 9000, 31, true, 8000},
		}},
		{"growth is counted from the last trim, not from the start", []check{
			{false, 9000, 1, true, 7000}, {false, 7600, 3, true, 7000}, {false, 7400, 10, false, 0},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t0 := time.Unix(1000, 0)
			p := newIdleTrim(time.Second, 8*time.Second, 512, 8000, t0)
			for i, ch := range c.checks {
				now := t0.Add(time.Duration(ch.at) * time.Second)
				got := p.due(ch.busy, ch.kib, now)
				if got != ch.want {
					t.Fatalf("check %d (busy %v, %d KiB, at %d s): trim = %v, want %v", i, ch.busy, ch.kib, ch.at, got, ch.want)
				}
				if got {
					p.trimmed(ch.after, now)
				}
			}
		})
	}
}

// garbage is what the loop test leaves for the trim to give back.
var garbage []byte

// TestTrimWhenIdle: the real loop, in this process, checking every 20 ms.
// Idle with 32 MiB of freed heap still resident, it gives it back; kept
// busy (a goroutine spinning), it leaves it; it returns when ctx ends.
func TestTrimWhenIdle(t *testing.T) {
	const every = 20 * time.Millisecond
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		name     string
		busy     bool
		wantTrim bool
	}{
		{"idle: the freed heap is given back", false, true},
		{"busy: nothing is trimmed", true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { trimWhenIdle(ctx, log, every, every/4, 8<<10, time.Second) })
			// Let the trim at start-up happen, then make 32 MiB resident
			// and free it: the runtime keeps the pages for a while.
			time.Sleep(3 * every)
			stopSpin := make(chan struct{})
			if c.busy {
				wg.Go(func() {
					for {
						select {
						case <-stopSpin:
							return
						default:
						}
					}
				})
			}
			garbage = make([]byte, 32<<20)
			for i := range garbage {
				garbage[i] = 1
			}
			high := residentKB()
			garbage = nil
			// Up to 50 checks for the resident set to fall by 16 MiB.
			fell := false
			for range 50 {
				time.Sleep(every)
				if residentKB() < high-16<<10 {
					fell = true
					break
				}
			}
			close(stopSpin)
			cancel()
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("trimWhenIdle did not return within 5 s of its context ending")
			}
			if fell != c.wantTrim {
				t.Fatalf("resident %d KiB with 32 MiB freed, %d KiB 50 checks later: given back = %v, want %v", high, residentKB(), fell, c.wantTrim)
			}
		})
	}
}
