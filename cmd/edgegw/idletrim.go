package main

import (
	"context"
	"log/slog"
	"syscall"
	"time"
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
// (CPU time over busyCPU) and its resident KiB; it trims when the process
// was idle for a whole check, holds growKiB more than after the last trim,
// and the last trim is at least gap old. The gap starts at the check
// interval and doubles with every trim made without a busy check in
// between, up to maxGap, so memory that idle work itself brings back (a
// timer, the runtime's forced collection every two minutes) is not
// trimmed over and over; a busy check sets it back. A busy gateway is
// never trimmed: trimming costs nothing per message.
type idleTrim struct {
	growKiB int
	maxGap  time.Duration

	gap      time.Duration // current minimum spacing of trims
	interval time.Duration
	lastKiB  int       // resident after the last trim
	lastAt   time.Time // when it was made
}

// newIdleTrim starts the policy at now, after a trim that left
// residentKiB.
func newIdleTrim(interval, maxGap time.Duration, growKiB, residentKiB int, now time.Time) *idleTrim {
	return &idleTrim{growKiB: growKiB, maxGap: maxGap, gap: interval, interval: interval, lastKiB: residentKiB, lastAt: now}
}

// due reports whether to trim now, given whether the process was busy
// since the last check and its resident KiB.
func (p *idleTrim) due(busy bool, residentKiB int, now time.Time) bool {
	if busy {
		p.gap = p.interval
		return false
	}
	return residentKiB >= p.lastKiB+p.growKiB && now.Sub(p.lastAt) >= p.gap
}

// trimmed records a trim made at now that left residentKiB.
func (p *idleTrim) trimmed(residentKiB int, now time.Time) {
	p.lastKiB, p.lastAt = residentKiB, now
	p.gap = min(2*p.gap, p.maxGap)
}

// Idle trimming: checked every second (a getrusage; /proc/self/statm only
// when idle); idle means under 5 ms of CPU in that second (0.5 % of a
// core: at 20 msg/s the gateway uses about 1 %); worth it from 512 KiB
// regained; at most every 5 minutes while idle work keeps bringing memory
// back.
const (
	idleTrimEvery   = time.Second
	idleTrimBusyCPU = 5 * time.Millisecond
	idleTrimGrowKiB = 512
	idleTrimMaxGap  = 5 * time.Minute
)

// cpuTime is the CPU time the process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// trimWhenIdle trims once now (the end of start-up), then again whenever
// idleTrim says so, until ctx ends. Each trim is logged at Debug.
func trimWhenIdle(ctx context.Context, log *slog.Logger, every, busyCPU time.Duration, growKiB int, maxGap time.Duration) {
	logTrim(log)
	p := newIdleTrim(every, maxGap, growKiB, residentKB(), time.Now())
	t := time.NewTicker(every)
	defer t.Stop()
	cpu0 := cpuTime()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := cpuTime()
			busy := cpu-cpu0 > busyCPU
			cpu0 = cpu
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
			cpu0 = cpuTime()
		}
	}
}
