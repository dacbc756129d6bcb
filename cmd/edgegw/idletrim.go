package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"syscall"
	"time"
	"unsafe"
)

// idleTrim decides when an idle gateway trims its resident memory again
// (trimResident). Start-up is not over at ready: the first upstream TLS
// handshake, the first clients and the first messages run code (crypto,
// x509, the publish path) that an idle gateway does not run again, and the
// kernel maps it back in 64 KiB windows around each page touched; so do
// the runtime's tables the garbage collector reads. Measured on an idle,
// connected gateway that had sent one message: 6.5 MB resident after the
// trim at ready, 10.5-11.5 MB a few seconds later, 7.8 MB with one more trim
// once it fell idle.
//
// Each check it is told whether the process was busy since the last one
// (CPU time over busyCPU) and its resident KiB. It trims when the process
// was idle for a whole check, holds growKiB more than its idle floor, and
// the last trim is at least gap old. The floor is what idle work itself
// brings back after a trim: the code of its timers (the broker probe every
// 5 s, STATUS every 10 s, mochi's one-second loops), the pages the
// collector reads, the heap it allocates. After each trim it makes, the
// resident set at the next settleChecks idle checks raises the floor from
// what the trim left, so the idle gateway alone does not undo a trim and
// cause the next (measured on an idle gateway: 2 MB of the binary back
// within 6 s of a trim; with the floor taken right after the trim it
// trimmed four times in 30 idle seconds). The trim at ready teaches
// nothing (connecting and the first messages come after it): its floor is
// what it left. The gap starts at the check interval and doubles with
// every trim made without a busy check in between, up to maxGap; a busy
// check sets it back. A busy gateway is never trimmed: trimming costs
// nothing per message.
type idleTrim struct {
	growKiB int
	maxGap  time.Duration

	interval time.Duration
	gap      time.Duration // current minimum spacing of trims
	floorKiB int           // resident when idle, after the last trim
	settle   int           // idle checks left that raise floorKiB
	lastAt   time.Time     // when the last trim was made
}

// settleChecks is how many idle checks after a trim learn the idle floor:
// long enough to see the gateway's 5 s and 10 s timers run.
const settleChecks = 12

// newIdleTrim starts the policy at now, after the trim at ready that left
// residentKiB.
func newIdleTrim(interval, maxGap time.Duration, growKiB, residentKiB int, now time.Time) *idleTrim {
	return &idleTrim{growKiB: growKiB, maxGap: maxGap, interval: interval, gap: interval, floorKiB: residentKiB, lastAt: now}
}

// due reports whether to trim now, given whether the process was busy
// since the last check and its resident KiB.
func (p *idleTrim) due(busy bool, residentKiB int, now time.Time) bool {
	switch {
	case busy:
		p.gap = p.interval
		return false
	case p.settle > 0:
		p.settle--
		p.floorKiB = max(p.floorKiB, residentKiB)
		return false
	}
	return residentKiB >= p.floorKiB+p.growKiB && now.Sub(p.lastAt) >= p.gap
}

// trimmed records a trim made at now that left residentKiB.
func (p *idleTrim) trimmed(residentKiB int, now time.Time) {
	p.floorKiB, p.lastAt, p.settle = residentKiB, now, settleChecks
	p.gap = min(2*p.gap, p.maxGap)
}

// Idle trimming: checked every second (a getrusage; /proc/self/statm only
// when idle); idle means under 5 ms of CPU in that second (0.5 % of a
// core: at 20 msg/s the gateway uses about 1 %); worth it from 1 MiB over
// the idle floor; at most every 5 minutes while idle work keeps bringing
// memory back.
const (
	idleTrimEvery   = time.Second
	idleTrimBusyCPU = 5 * time.Millisecond
	idleTrimGrowKiB = 1 << 10
	idleTrimMaxGap  = 5 * time.Minute
)

// processCPU is what trimWhenIdle reads the process's CPU time with: cpuTime,
// or in a test a clock that says idle or busy whatever else the machine
// runs.
var processCPU = cpuTime

// cpuTime is the CPU time the process has used (user and system). It is
// read every second, so as a raw system call: getrusage never blocks, and
// syscall.Getrusage's entersyscall would wake the runtime's sysmon out of
// its deep sleep in an idle process, for a burst of 20 µs naps.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if _, _, e := syscall.RawSyscall(syscall.SYS_GETRUSAGE, uintptr(syscall.RUSAGE_SELF), uintptr(unsafe.Pointer(&ru)), 0); e != 0 {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// idleGCPercent is the GC target while idle. Go's heap goal is never under
// 4 MB × GOGC/100, so at 100 an idle gateway, whose live heap is under
// 1 MB after a collection and whose timers keep allocating (measured: its
// heap mapping grew 20 KB a second), let its heap grow by some 3 MB before
// the next (the runtime forces one every two minutes). At 25 the floor is
// 1 MB. A busy check puts the previous setting back (GOGC, or Go's 100),
// so it costs nothing per message; an operator's GOGC of 25 or under, or
// off, is left alone.
const idleGCPercent = 25

// trimWhenIdle trims once now (the end of start-up), then again whenever
// idleTrim says so, until ctx ends; while idle it lowers the GC target to
// idleGCPercent. Each trim is logged at Debug.
func trimWhenIdle(ctx context.Context, log *slog.Logger, every, busyCPU time.Duration, growKiB int, maxGap time.Duration) {
	logTrim(log)
	p := newIdleTrim(every, maxGap, growKiB, residentKB(), time.Now())
	t := time.NewTicker(every)
	defer t.Stop()
	busyGC := debug.SetGCPercent(100)
	debug.SetGCPercent(busyGC)
	lowered := false
	gc := func(idle bool) {
		if idle == lowered || busyGC <= idleGCPercent { // off (-1) or already low: left alone
			return
		}
		lowered = idle
		if idle {
			debug.SetGCPercent(idleGCPercent)
		} else {
			debug.SetGCPercent(busyGC)
		}
	}
	defer gc(false)
	cpu0 := processCPU()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := processCPU()
			busy := cpu-cpu0 > busyCPU
			cpu0 = cpu
			gc(!busy)
			if busy {
				p.due(true, 0, now)
				continue
			}
			if !p.due(false, residentKB(), now) {
				continue
			}
			after := logTrim(log)
			p.trimmed(after, time.Now())
			// The trim's own work (a full collection) is not traffic.
			cpu0 = processCPU()
		}
	}
}
