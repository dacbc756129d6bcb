package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestIdleTrimPolicy: when an idle gateway trims again (here: 1 MiB over
// the floor, gaps from 1 s to 16 s, 8000 KiB left by the trim at ready).
// Each step is one check: busy or not, the resident KiB, the seconds since
// the start; want is whether it trims (and a trim leaves after KiB).
func TestIdleTrimPolicy(t *testing.T) {
	type check struct {
		busy  bool
		kib   int
		at    int // seconds after the start
		want  bool
		after int // resident after the trim, when want
	}
	// settle is the idle checks after a trim that learn the floor.
	settle := func(from, kib int) []check {
		var cs []check
		for i := range settleChecks {
			cs = append(cs, check{false, kib, from + i, false, 0})
		}
		return cs
	}
	cat := func(parts ...[]check) []check {
		var cs []check
		for _, p := range parts {
			cs = append(cs, p...)
		}
		return cs
	}
	cases := []struct {
		name   string
		checks []check
	}{
		{"idle and 1 MiB over what the trim at ready left: trimmed at once", []check{
			{false, 8000, 1, false, 0}, {false, 9024, 2, true, 7900},
		}},
		{"idle but grown by less: never trimmed", []check{
			{false, 9023, 1, false, 0}, {false, 8300, 2, false, 0}, {false, 9023, 300, false, 0},
		}},
		{"busy: never trimmed, however much it grew", []check{
			{true, 20000, 1, false, 0}, {true, 20000, 2, false, 0}, {true, 20000, 3, false, 0},
		}},
		{"busy then idle: trimmed at the first idle check", []check{
			{true, 12000, 1, false, 0}, {true, 12000, 2, false, 0}, {false, 12000, 3, true, 7000},
		}},
		{"after a trim, what idle work brings back is the floor: the same growth is not trimmed again", cat(
			[]check{{false, 12000, 1, true, 6000}},
			settle(2, 8000), // idle code and heap come back: 8000 is the floor
			[]check{{false, 8500, 30, false, 0}, {false, 9023, 60, false, 0}, {false, 9024, 61, true, 6000}},
		)},
		{"a busy check while settling does not teach the floor", cat(
			[]check{{false, 12000, 1, true, 6000}, {true, 11000, 2, false, 0}},
			settle(3, 6500),
			[]check{{false, 7600, 40, true, 6000}},
		)},
		{"idle work that keeps bringing memory back: the gap doubles (2, 4, 8 s after settling)", cat(
			[]check{{false, 9100, 1, true, 6000}}, settle(2, 6000),
			[]check{{false, 7100, 14, true, 6000}}, settle(15, 6000), // gap 2 s: 13 s since
			[]check{{false, 7100, 27, true, 6000}}, settle(28, 6000), // gap 4 s: 13 s since
			[]check{{false, 7100, 40, true, 6000}}, settle(41, 6000), // gap 8 s: 13 s since
			[]check{{false, 7100, 53, false, 0}, {false, 7100, 56, true, 6000}}, // gap 16 s
		)},
		{"the gap stops doubling at the maximum (16 s here)", cat(
			[]check{{false, 9100, 1, true, 6000}}, settle(2, 6000),
			[]check{{false, 7100, 14, true, 6000}}, settle(15, 6000),
			[]check{{false, 7100, 27, true, 6000}}, settle(28, 6000),
			[]check{{false, 7100, 40, true, 6000}}, settle(41, 6000),
			[]check{{false, 7100, 56, true, 6000}}, settle(57, 6000),
			[]check{{false, 7100, 71, false, 0}, {false, 7100, 72, true, 6000}}, // still 16 s
		)},
		{"a busy check sets the gap back to one check (16 s before it: no trim 14 s after the last)", cat(
			[]check{{false, 9100, 1, true, 6000}}, settle(2, 6000),
			[]check{{false, 7100, 14, true, 6000}}, settle(15, 6000),
			[]check{{false, 7100, 27, true, 6000}}, settle(28, 6000),
			[]check{{false, 7100, 40, true, 6000}}, settle(41, 6000),
			[]check{{false, 7100, 56, true, 6000}}, settle(57, 6000),
			[]check{{true, 7100, 69, false, 0}, {false, 7100, 70, true, 6000}},
		)},
		{"without a busy check the same moment is too early", cat(
			[]check{{false, 9100, 1, true, 6000}}, settle(2, 6000),
			[]check{{false, 7100, 14, true, 6000}}, settle(15, 6000),
			[]check{{false, 7100, 27, true, 6000}}, settle(28, 6000),
			[]check{{false, 7100, 40, true, 6000}}, settle(41, 6000),
			[]check{{false, 7100, 56, true, 6000}}, settle(57, 6000),
			[]check{{false, 7100, 69, false, 0}, {false, 7100, 70, false, 0}},
		)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t0 := time.Unix(1000, 0)
			p := newIdleTrim(time.Second, 16*time.Second, 1024, 8000, t0)
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

// gogc is the runtime's current GC target percentage.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// garbage is what the loop test leaves for the trim to give back.
var garbage []byte

// TestTrimWhenIdle: the real loop, in this process, checking every 20 ms.
// Idle with 32 MiB of freed heap still resident, it gives it back and the
// GC target is idleGCPercent; kept busy (a goroutine spinning), it leaves
// it and the target is GOGC's (Go's 100); it returns when ctx ends, the target put
// back.
func TestTrimWhenIdle(t *testing.T) {
	// A check every 100 ms, idle under 25 ms of CPU in one: wide enough
	// that a loaded machine neither starves the spinning goroutine below
	// it nor lends the idle process that much CPU (20 ms failed once when
	// the machine was busy).
	const every = 100 * time.Millisecond
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
			base := gogc() // GOGC, or Go's 100
			// The loop's CPU clock: idle stands still, busy runs a whole
			// check's worth per reading, so neither depends on what else
			// the machine (or this test binary) runs; the spinner below
			// still makes the busy case really busy.
			var ticks atomic.Int64
			processCPU = func() time.Duration {
				if c.busy {
					return time.Duration(ticks.Add(int64(every)))
				}
				return 0
			}
			defer func() { processCPU = cpuTime }()
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { trimWhenIdle(ctx, log, every, every/4, 24<<10, time.Second) })
			// Let the trim at start-up happen, then make 32 MiB resident
			// and free it: the runtime keeps the pages for a while.
			time.Sleep(3 * every)
			var stopSpin atomic.Bool
			if c.busy {
				// Busy: a goroutine burning CPU until told to stop.
				wg.Go(func() {
					for !stopSpin.Load() {
					}
				})
			}
			garbage = make([]byte, 32<<20)
			for i := range garbage {
				garbage[i] = 1
			}
			garbage = nil
			// Trimming from 24 MiB over the floor: a check landing while
			// the 32 MiB are still being filled (live, so a trim then frees
			// nothing and its floor is the filled heap) is unlikely even on
			// a loaded machine.
			high := residentKB()
			// Up to 30 checks for the resident set to fall by 16 MiB.
			fell := false
			for range 30 {
				time.Sleep(every)
				if residentKB() < high-16<<10 {
					fell = true
					break
				}
			}
			gcIdle := gogc()
			stopSpin.Store(true)
			cancel()
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("trimWhenIdle did not return within 5 s of its context ending")
			}
			if fell != c.wantTrim {
				t.Fatalf("resident %d KiB with 32 MiB freed, %d KiB 30 checks later: given back = %v, want %v", high, residentKB(), fell, c.wantTrim)
			}
			want := base
			if !c.busy && base > idleGCPercent {
				want = idleGCPercent
			}
			if gcIdle != want {
				t.Errorf("GC target while running = %d, want %d (GOGC %d)", gcIdle, want, base)
			}
			if g := gogc(); g != base {
				t.Errorf("GC target after the loop returned = %d, want %d (put back)", g, base)
			}
		})
	}
}

// TestIsPIE reads the ELF type of this test binary built both ways.
func TestIsPIE(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pie, err := isPIE(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, mode := range []string{"exe", "pie"} {
		out := filepath.Join(dir, mode)
		src := filepath.Join(dir, "main.go")
		if err := os.WriteFile(src, []byte("package main\nfunc main() {}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("go", "build", "-buildmode="+mode, "-o", out, src)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build -buildmode=%s: %v\n%s", mode, err, b)
		}
		got, err := isPIE(out)
		if err != nil {
			t.Fatal(err)
		}
		if got != (mode == "pie") {
			t.Errorf("-buildmode=%s: isPIE = %v", mode, got)
		}
	}
	if _, err := isPIE(filepath.Join(dir, "main.go")); err == nil {
		t.Error("a Go source file is taken for an ELF file")
	}
	t.Logf("this test binary: PIE %v", pie)
}

// TestRawReadsAgree: residentKB's pread of a kept /proc/self/statm and
// cpuTime's raw getrusage read what the ordinary calls read, every time.
func TestRawReadsAgree(t *testing.T) {
	for i := 0; i < 3; i++ {
		b, err := os.ReadFile("/proc/self/statm")
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b))
		pages, _ := strconv.Atoi(f[1])
		want := pages * os.Getpagesize() / 1024
		if got := residentKB(); got <= 0 || got < want-4096 || got > want+4096 {
			t.Fatalf("read %d: residentKB %d, /proc/self/statm says %d KiB", i, got, want)
		}
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		want2 := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		if got := cpuTime(); got < want2 || got > want2+time.Second {
			t.Fatalf("read %d: cpuTime %v, getrusage %v", i, got, want2)
		}
	}
}
