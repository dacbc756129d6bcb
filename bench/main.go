// Command bench is edgegw's benchmark against Mosquitto's own bridge
// (make bench): the same workloads against edgegw, a Mosquitto with its
// `connection` bridge, and a publisher straight into the upstream, all on
// loopback, each figure the median of several runs. It writes a Markdown
// table and a PNG chart.
//
// Environment: BENCH_QUICK=1 (small sizes, one run), BENCH_RUNS=n,
// BENCH_ONLY=steady,outage,crash,qos2,fleet,backlog,wear,cpu,slow, BENCH_KEEP=1 (keep
// the work directory), BENCH_KINDS=edgegw,mosquitto,... (only those columns), BENCH_PPROF=dir (a CPU profile of
// every edgegw process there), BENCH_WINDOW=n (publisher window, default 500), EDGEGW=path of the binary (default bin/edgegw).
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/edgegw/edgegw/internal/certs"
)

var (
	edgegwBin = "bin/edgegw"
	keepDirs  = os.Getenv("BENCH_KEEP") != ""
)

// results holds every figure of every run: metric → kind → per-run values
// (NaN where a run failed, so runs stay aligned for pairwise ratios).
type results struct {
	v      map[string]map[string][]float64
	errors []string
	// na: kind → why it has no figures in the wear table (an edgegw that
	// does not know durability = "disk").
	na map[string]string
}

func (r *results) add(run int, kind string, f figures, metrics []string) {
	for _, m := range metrics {
		if r.v[m] == nil {
			r.v[m] = map[string][]float64{}
		}
		for len(r.v[m][kind]) < run {
			r.v[m][kind] = append(r.v[m][kind], math.NaN())
		}
		v, ok := f[m]
		if !ok {
			v = math.NaN()
		}
		r.v[m][kind] = append(r.v[m][kind], v)
	}
}

func main() {
	out := flag.String("out", "bench/RESULTS.md", "Markdown results")
	png := flag.String("png", "bench/results.png", "PNG chart")
	flag.Parse()
	if e := os.Getenv("EDGEGW"); e != "" {
		edgegwBin = e
	}
	if abs, err := filepath.Abs(edgegwBin); err == nil {
		edgegwBin = abs
	}
	sz, runs, mode := full, 3, "full"
	if os.Getenv("BENCH_QUICK") != "" {
		sz, runs, mode = quick, 1, "quick (BENCH_QUICK=1)"
	}
	if v, err := strconv.Atoi(os.Getenv("BENCH_RUNS")); err == nil && v > 0 {
		runs = v
	}
	if v, err := strconv.Atoi(os.Getenv("BENCH_WINDOW")); err == nil && v > 0 {
		sz.window = v
	}
	only := map[string]bool{}
	for _, w := range strings.Split(os.Getenv("BENCH_ONLY"), ",") {
		if w != "" {
			only[w] = true
		}
	}
	want := func(w string) bool { return len(only) == 0 || only[w] }
	kinds := map[string]bool{}
	for _, k := range strings.Split(os.Getenv("BENCH_KINDS"), ",") {
		if k != "" {
			kinds[k] = true
		}
	}

	start := time.Now()
	logf := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "bench %6.1fs: %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}
	if _, err := os.Stat(edgegwBin); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v (run make build)\n", err)
		os.Exit(2)
	}
	root, err := os.MkdirTemp("", "edgegw-bench.")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if !keepDirs {
		defer os.RemoveAll(root)
	} else {
		logf("work dir %s kept", root)
	}
	pki, err := certs.Init(certs.Options{Dir: filepath.Join(root, "pki"), ServerNames: []string{"127.0.0.1", "localhost"}, ClientNames: []string{"gw-01", "pub", "sub"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	// Everything is bounded: the whole run has 17 minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 17*time.Minute)
	defer cancel()
	b := &bench{root: root, pki: pki, sz: sz, log: logf}
	res := &results{v: map[string]map[string][]float64{}, na: map[string]string{}}
	do := func(run int, kind, what string, metrics []string, fn func() (figures, error)) {
		if ctx.Err() != nil || (len(kinds) > 0 && !kinds[kind]) {
			res.add(run, kind, nil, metrics)
			return
		}
		t := time.Now()
		f, err := fn()
		if err != nil {
			msg := fmt.Sprintf("run %d %s %s: %v", run+1, what, kind, err)
			res.errors = append(res.errors, msg)
			logf("ERROR %s", msg)
		}
		res.add(run, kind, f, metrics)
		var parts []string
		for _, k := range sortedKeys(f) {
			parts = append(parts, fmt.Sprintf("%s=%.4g", k, f[k]))
		}
		logf("run %d %-8s %-17s %5.1fs %s", run+1, what, kind, time.Since(t).Seconds(), strings.Join(parts, " "))
	}
	// The flash-wear, CPU and slow-board tables: first, one run each (their
	// windows are long; wear runs its eight rigs at once).
	if want("wear") && ctx.Err() == nil {
		t := time.Now()
		for k, o := range b.wear(ctx) {
			res.add(0, k, o.f, wearMetrics)
			switch {
			case strings.HasPrefix(o.na, "error: "):
				res.errors = append(res.errors, "wear "+k+": "+strings.TrimPrefix(o.na, "error: "))
			case o.na != "":
				res.na[k] = o.na
			}
		}
		logf("wear done in %.1fs", time.Since(t).Seconds())
	}
	if want("cpu") && ctx.Err() == nil {
		t := time.Now()
		out, err := b.cpu(ctx)
		for k, f := range out {
			res.add(0, k, f, cpuMetrics)
		}
		if err != nil {
			res.errors = append(res.errors, "cpu: "+err.Error())
			logf("ERROR cpu: %v", err)
		}
		logf("cpu done in %.1fs: %v", time.Since(t).Seconds(), out)
	}
	if want("slow") {
		for _, k := range slowKinds {
			do(0, k, "slow", slowMetrics, func() (figures, error) { return b.slow(ctx, k, true) })
			do(0, k, "slowfree", slowFreeMetrics, func() (figures, error) { return b.slow(ctx, k, false) })
		}
	}
	for run := range runs {
		if want("steady") {
			for _, k := range []string{kEdgegw, kMosq, kMosqDflt, kDirect} {
				do(run, k, "steady", metricsOf("steady."+"msgs", "steady.intake", "steady.lost", "latency.p50", "latency.p99"), func() (figures, error) { return b.steady(ctx, k) })
			}
		}
		if want("outage") {
			for _, k := range []string{kEdgegw, kMosq, kMosqDflt} {
				do(run, k, "outage", outageMetrics, func() (figures, error) { return b.outage(ctx, k) })
			}
		}
		if want("crash") {
			for _, k := range []string{kEdgegw, kMosq} {
				do(run, k, "crash", metricsOf("crash.acked", "crash.delivered", "crash.lost", "crash.dup"), func() (figures, error) { return b.crash(ctx, k) })
			}
		}
		if want("qos2") {
			for _, k := range []string{kEdgegw, kMosq} {
				do(run, k, "qos2", metricsOf("qos2.spin", "qos2.acked", "qos2.lost", "qos2.dup", "qos2.ooo", "qos2.cuts"), func() (figures, error) { return b.qos2(ctx, k) })
			}
		}
		if run == 0 && want("backlog") {
			do(0, kEdgegw, "backlog", backlogMetrics, func() (figures, error) { return b.backlog(ctx) })
		}
		if want("fleet") {
			for _, rate := range []int{0, fleetReplayRate} {
				kind := "fleet-r" + strconv.Itoa(rate)
				do(run, kind, "fleet", metricsOf("fleet.connects", "fleet.drain", "fleet.lost", "fleet.peakmsgs"), func() (figures, error) { return b.fleet(ctx, rate) })
			}
		}
	}
	if ctx.Err() != nil {
		res.errors = append(res.errors, "the 17-minute bound was reached; later workloads did not run")
	}
	elapsed := time.Since(start)
	md := report(res, sz, runs, mode, elapsed)
	if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if err := writeChart(*png, res); err != nil {
		fmt.Fprintln(os.Stderr, "bench: chart:", err)
		os.Exit(1)
	}
	fmt.Print(md)
	logf("wrote %s and %s in %s", *out, *png, elapsed.Round(time.Second))
	if len(res.errors) > 0 {
		if !keepDirs {
			os.RemoveAll(root) // os.Exit skips the deferred removal
		}
		os.Exit(1)
	}
}

// fleetReplayRate is the replay_rate of the paced fleet variant.
const fleetReplayRate = 200

var outageMetrics = metricsOf("idle.rss", "outage.acked", "outage.stalled", "outage.spin", "outage.intake", "outage.rss.queued", "outage.rss.peak", "outage.rss.growth",
	"outage.delivered", "outage.lost", "outage.reconnected", "outage.dup", "outage.ooo", "outage.reconnect", "outage.drain", "outage.drainrate", "disk.perbyte")

var backlogMetrics = metricsOf("bl.idle", "bl.intake", "bl.peak", "bl.growth", "bl.perbyte.intake", "bl.start", "bl.took",
	"bl.restart.rss", "bl.drain.peak", "bl.lost", "bl.dup", "bl.drainrate", "bl.perbyte.drain")

func metricsOf(m ...string) []string { return m }

// wearMetrics: per link state and rate ("sat" = as fast as the bridge
// takes, link down only), bytes per payload byte and the rate achieved.
var wearMetrics = func() []string {
	var m []string
	for _, st := range []string{"up", "down"} {
		for _, r := range append(wearRateNames(), "sat") {
			if st == "up" && r == "sat" {
				continue
			}
			m = append(m, "wear."+st+"."+r, "wear."+st+"."+r+".rate")
		}
	}
	return m
}()

func wearRateNames() []string {
	var n []string
	for _, r := range wearRates {
		n = append(n, strconv.Itoa(r))
	}
	return n
}

var cpuMetrics = func() []string {
	m := []string{"cpu.idle.rss", "cpu.idle.cpu", "cpuproxy.200"}
	for _, r := range cpuRates {
		m = append(m, "cpu."+strconv.Itoa(r))
	}
	return m
}()

var slowMetrics = metricsOf("slow.msgs", "slow.intake", "slow.cpu", "slow.lost")

var slowFreeMetrics = metricsOf("slowfree.msgs", "slowfree.cpu", "slowfree.lost")

// stat is median, min and max of the values that are not NaN.
func stat(v []float64) (med, lo, hi float64, n int) {
	var x []float64
	for _, f := range v {
		if !math.IsNaN(f) {
			x = append(x, f)
		}
	}
	if len(x) == 0 {
		return math.NaN(), math.NaN(), math.NaN(), 0
	}
	slices.Sort(x)
	m := x[len(x)/2]
	if len(x)%2 == 0 {
		m = (x[len(x)/2-1] + x[len(x)/2]) / 2
	}
	return m, x[0], x[len(x)-1], len(x)
}

// ratios divides a by b run by run.
func ratios(a, b []float64) []float64 {
	var r []float64
	for i := range min(len(a), len(b)) {
		if b[i] != 0 {
			r = append(r, a[i]/b[i])
		} else {
			r = append(r, math.NaN())
		}
	}
	return r
}
