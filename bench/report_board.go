package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/edgegw/edgegw/bench/load"
)

var kindTitle = map[string]string{
	kEdgegwDflt: "edgegw, default config",
	kEdgegwDisk: "edgegw, `[buffer] durability = \"disk\"`",
	kMosq:       "Mosquitto bridge, `persistence true` (default autosave: every 30 min)",
	kMosqAuto:   "Mosquitto bridge, `autosave_on_changes true`, `autosave_interval 1`",
}

// wearTarget is issue 11's acceptance bound for edgegw's default, by
// column ("" = none).
var wearTarget = map[string]float64{"up.20": 0.1, "up.200": 0.1, "down.20": 3, "down.200": 1.5, "down.sat": 1.2}

// gbPerDay is what bytes-per-payload-byte ratio bb costs a day at rate.
func gbPerDay(bb float64, rate int) float64 {
	return bb * float64(rate*load.PayloadSize) * 86400 / 1e9
}

func wearColumns() []string {
	var c []string
	for _, st := range []string{"up", "down"} {
		for _, r := range wearRateNames() {
			c = append(c, st+"."+r)
		}
	}
	return append(c, "down.sat")
}

// wearCell is "B/B (GB/day)", with the rate reached when the bridge fell
// more than 10 % short of the pace.
func wearCell(res *results, kind, col string) string {
	if na := res.na[kind]; na != "" {
		return na
	}
	bb, _, _, n := stat(res.v["wear."+col][kind])
	if n == 0 {
		return "—"
	}
	rate, _, _, _ := stat(res.v["wear."+col+".rate"][kind])
	s := fmtBB(bb)
	_, rs, _ := strings.Cut(col, ".")
	if want, err := strconv.Atoi(rs); err == nil {
		s += " (" + fmtGB(gbPerDay(bb, want)) + ")"
		if rate < 0.9*float64(want) {
			s += fmt.Sprintf(", only %.0f msg/s", rate)
		}
	} else if !math.IsNaN(rate) {
		f := "k"
		if rate < 100 {
			f = "f1" // a bridge that all but stopped acknowledging
		}
		s += " at " + fmtv(rate, f) + " msg/s"
	}
	return s
}

func fmtBB(v float64) string {
	switch {
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v/1000, 'f', 1, 64) + "k"
}

func fmtGB(v float64) string {
	if v < 1 {
		return strconv.FormatFloat(v*1000, 'f', 1, 64) + " MB/day"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " GB/day"
}

func boardReport(res *results, sz sizes) string {
	var b strings.Builder
	if hasAny(res, "wear.") {
		fmt.Fprintf(&b, `## 7 flash wear: bytes reaching the block device per payload byte (GB/day), one run

Each bridging process keeps its data directory on its own loop-mounted ext4 (a sparse image,
`+"`mkfs.ext4`"+` defaults but inode tables and journal initialised at mkfs time, so the kernel's lazy
init writes nothing during the windows; mounted with defaults, commit=5 s), so the device's counter
(/sys/block/loopN/stat field 7, sectors written × 512) includes the journal and metadata.
A local publisher sends 100-byte QoS 1 messages at each rate for %s (window %d), one out rule QoS 1 to
an upstream Mosquitto over mutual TLS. The file system is synced (syncfs, this mount only) before and
after each window, so what the window dirtied is counted in it. Link up and link down are two
rigs per column, all eight at once; the link-down rig loses its link after warm-up (the proxy
closes its connections and its port, so reconnects are refused: a proxy that accepts and closes at
once hangs Mosquitto 2.0.11's bridge at its first retry, see the notes) and keeps its backlog
from one rate to the next (1, then 20, then 200 msg/s); its saturation window (as fast as the
bridge acknowledges, %s) runs after every paced window, one column at a time. GB/day is the ratio
× rate × 100 B × 86,400 s. A cell says "only N msg/s" when the bridge fell more than 10 %% behind
the pace (Mosquitto saving its whole database per message); a window then closes half a window late.

`, sz.wearWindow, sz.window, sz.wearSatWindow)
		cols := wearColumns()
		b.WriteString("| | ")
		for _, c := range cols {
			st, r, _ := strings.Cut(c, ".")
			if r == "sat" {
				r = "saturation"
			} else {
				r += " msg/s"
			}
			fmt.Fprintf(&b, "%s, link %s | ", r, st)
		}
		b.WriteString("\n|---|" + strings.Repeat("---|", len(cols)) + "\n")
		for _, k := range wearKinds {
			fmt.Fprintf(&b, "| %s |", kindTitle[k])
			for _, c := range cols {
				fmt.Fprintf(&b, " %s |", wearCell(res, k, c))
			}
			b.WriteString("\n")
		}
		b.WriteString("| target for edgegw's default (issue 11) |")
		for _, c := range cols {
			if t, ok := wearTarget[c]; ok {
				fmt.Fprintf(&b, " ≤ %g |", t)
			} else {
				b.WriteString(" |")
			}
		}
		b.WriteString("\n\n")
	}
	if hasAny(res, "cpu.") || hasAny(res, "slow.") {
		fmt.Fprintf(&b, `## 8 CPU per message, idle footprint, and a slow board, one run

CPU: edgegw (default config) and Mosquitto's bridge (persistence true, max_queued_messages 0)
side by side, both at once so both see the same background load; link up, each connected straight to
its own upstream Mosquitto (mutual TLS), as a gateway meets a remote broker; 100-byte QoS 1 messages
paced at each rate for %s (at least %d messages); the run time of the bridging process's threads over the window
(/proc/PID/task/*/schedstat, nanoseconds: utime+stime without the 10 ms ticks) divided by the messages,
measured in %d consecutive parts of the window: the figure is their median. Idle: after warm-up, %s with nothing published.
The "through the bench's proxy" row repeats 200 msg/s on the path of the other tables, where the upstream
is reached through a proxy inside the bench's own process, beside the publisher. There Mosquitto's two
writes of one wake-up (PUBACK to the publisher, PUBLISH upstream) wake that one process once; edgegw
acknowledges only once the upstream has, so its two writes are a round trip apart and wake it twice,
and each such wake-up costs the waker a few µs on this virtual machine. With a remote upstream the two
writes go to different hosts whichever bridge makes them.
Slow board: the bridging process in a cgroup capped to %d %% of one core (CFS quota %d µs per
%d µs; cgroup v2 cpu.max where the cpu controller is there, else v1) and pinned to CPU 0; the bench
(publisher, subscriber) pinned to CPU 1; the upstream Mosquitto (the far end) where the scheduler
puts it; %d QoS 1 messages as fast as a window of %d allows; throughput at the upstream subscriber.
When the bridging process uses clearly less than its cap, it was not the limit (the load's core
was: the cores are shared with the rest of the machine) and the ratio understates the difference;
the "load on any core" rows repeat the run with the bench free to use both cores (the bridging
process still capped and on CPU 0).

| figure | edgegw, default config | Mosquitto bridge | edgegw / Mosquitto | target (issue 11) |
|---|---|---|---|---|
`, sz.cpuWindow, cpuMinMsgs, cpuParts, sz.idleWindow, slowCap, slowCap*cgroupPeriod/100, cgroupPeriod, sz.slow, sz.window)
		for _, r := range []struct {
			label, metric, format, target string
			ratio                         bool
		}{
			{"CPU per message at 20 msg/s, µs", "cpu.20", "int", "", true},
			{"CPU per message at 200 msg/s, µs", "cpu.200", "int", "≤ 1.2× Mosquitto", true},
			{"CPU per message at 2,000 msg/s, µs", "cpu.2000", "int", "", true},
			{"CPU per message at 200 msg/s, through the bench's proxy, µs", "cpuproxy.200", "int", "", true},
			{"idle RSS (connected, after warm-up), MiB", "cpu.idle.rss", "f1", "edgegw ≤ 10 MiB", false},
			{"idle CPU, % of a core", "cpu.idle.cpu", "f2", "", false},
			{"slow board: throughput at the upstream subscriber, msg/s", "slow.msgs", "k", "≥ 1.2× Mosquitto", true},
			{"slow board: publisher intake (PUBACKs), msg/s", "slow.intake", "k", "", true},
			{"slow board: CPU the bridging process used, % of a core (cap 25)", "slow.cpu", "f1", "", false},
			{"slow board: acknowledged but lost", "slow.lost", "int", "", false},
			{"slow board, the load on any core: throughput at the upstream subscriber, msg/s", "slowfree.msgs", "k", "", true},
			{"slow board, the load on any core: CPU the bridging process used, % of a core (cap 25)", "slowfree.cpu", "f1", "", false},
			{"slow board, the load on any core: acknowledged but lost", "slowfree.lost", "int", "", false},
		} {
			v := res.v[r.metric]
			if v == nil {
				continue
			}
			rc := ""
			if r.ratio {
				rc = cell(ratios(v[kEdgegwDflt], v[kMosq]), "f2")
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.label, cell(v[kEdgegwDflt], r.format), cell(v[kMosq], r.format), rc, r.target)
		}
		if v := res.v["latency.p50"]; v != nil {
			fmt.Fprintf(&b, "| latency p50 at 1,000 msg/s, ms (workload 1: edgegw with `fsync = \"batch\"`) | %s | %s | %s | ≤ 1.2× Mosquitto |\n",
				cell(v[kEdgegw], "f2"), cell(v[kMosq], "f2"), cell(ratios(v[kEdgegw], v[kMosq]), "f2"))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func hasAny(res *results, prefix string) bool {
	for m, byKind := range res.v {
		if strings.HasPrefix(m, prefix) {
			for _, v := range byKind {
				if _, _, _, n := stat(v); n > 0 {
					return true
				}
			}
		}
	}
	return false
}

// boardTargets are issue 11's acceptance lines, each met or missed.
func boardTargets(res *results, mark func(bool) string) string {
	var b strings.Builder
	for _, c := range wearColumns() {
		t, ok := wearTarget[c]
		if !ok {
			continue
		}
		if v, _, _, n := stat(res.v["wear."+c][kEdgegwDflt]); n > 0 {
			st, r, _ := strings.Cut(c, ".")
			fmt.Fprintf(&b, "- flash wear, edgegw default, link %s at %s: %s B/B ≤ %g — %s\n", st, rateName(r), fmtBB(v), t, mark(v <= t))
		}
	}
	ratioLine := func(what, metric, kindA string, le bool, bound float64) {
		v := res.v[metric]
		if v == nil {
			return
		}
		med, _, _, n := stat(ratios(v[kindA], v[kMosq]))
		if n == 0 {
			return
		}
		op, ok := "≥", med >= bound
		if le {
			op, ok = "≤", med <= bound
		}
		fmt.Fprintf(&b, "- %s, edgegw / Mosquitto: %.2f %s %.1f — %s\n", what, med, op, bound, mark(ok))
	}
	ratioLine("CPU per message at 200 msg/s", "cpu.200", kEdgegwDflt, true, 1.2)
	ratioLine("slow-board throughput (25 % of a core)", "slow.msgs", kEdgegwDflt, false, 1.2)
	ratioLine("latency p50 at 1,000 msg/s", "latency.p50", kEdgegw, true, 1.2)
	if v, _, _, n := stat(res.v["cpu.idle.rss"][kEdgegwDflt]); n > 0 {
		fmt.Fprintf(&b, "- idle RSS, edgegw default: %.1f MiB ≤ 10 — %s\n", v, mark(v <= 10))
	}
	return b.String()
}

func rateName(r string) string {
	if r == "sat" {
		return "saturation"
	}
	return r + " msg/s"
}
