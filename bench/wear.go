package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/edgegw/edgegw/bench/load"
)

// wearRates are the sensor rates of the flash-wear table, msg/s.
var wearRates = []int{1, 20, 200}

// wearKinds are its columns, in order.
var wearKinds = []string{kEdgegwDflt, kEdgegwDisk, kMosq, kMosqAuto}

// wearOut is what the wear workload found for one kind.
type wearOut struct {
	f  figures
	na string // why the kind could not run ("" if it ran)
}

// wear: every kind twice (link up, link down) at once, each bridging
// process with its data directory on its own loop-mounted ext4; a paced
// publisher sends 100-byte QoS 1 messages for sz.wearWindow at each rate
// in wearRates; the link-down rigs then take a saturation window one at a
// time. Figures: block-device bytes per payload byte ("wear.up.20") and
// the rate achieved ("wear.up.20.rate").
func (b *bench) wear(ctx context.Context) map[string]*wearOut {
	out := map[string]*wearOut{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	// The saturation windows start when every paced window is over, and
	// run one after the other: each wants the cores to itself.
	var paced sync.WaitGroup
	var sat sync.Mutex
	for _, k := range wearKinds {
		out[k] = &wearOut{f: figures{}}
		for _, down := range []bool{false, true} {
			wg.Add(1)
			paced.Add(1)
			go func() {
				defer wg.Done()
				var once sync.Once
				done := func() { once.Do(paced.Done) }
				defer done()
				f, err := b.wearRig(ctx, k, down, done, &paced, &sat)
				mu.Lock()
				defer mu.Unlock()
				for m, v := range f {
					out[k].f[m] = v
				}
				if err != nil {
					if errors.Is(err, errKeyUnknown) {
						out[k].na = "n/a (key unknown)"
						b.log("wear %s: %v", k, err)
						return
					}
					b.log("ERROR wear %s down=%v: %v", k, down, err)
					if out[k].na == "" {
						out[k].na = "error: " + err.Error()
					}
				}
			}()
		}
	}
	wg.Wait()
	return out
}

func linkState(down bool) string {
	if down {
		return "down"
	}
	return "up"
}

// wearRig runs the paced windows on one rig, calls pacedDone, and for a
// link-down rig waits for every rig's paced windows (paced) and then takes
// its saturation window under sat.
func (b *bench) wearRig(ctx context.Context, kind string, down bool, pacedDone func(), paced *sync.WaitGroup, sat *sync.Mutex) (figures, error) {
	w := b.sz.wearWindow
	n := b.sz.wearSat
	for _, rate := range wearRates {
		n += rate * int(w.Seconds()*1.5+1)
	}
	r, sub, pub, err := b.start(ctx, rigOpts{kind: kind, wear: true}, 1, n, b.sz.window, false)
	if err != nil {
		return nil, err
	}
	defer r.close()
	defer sub.Close()
	defer pub.Close()
	state := linkState(down)
	if down {
		// The link stays down: the proxy closes its connections and its
		// port, so reconnects are refused. (A proxy that accepts and
		// closes at once, as Cut does, hangs Mosquitto 2.0.11's bridge
		// at its first retry; see the notes.)
		r.proxy.Close()
		// Let the bridge notice and write what a disconnect makes it
		// write before the first window.
		time.Sleep(2 * time.Second)
	}
	f := figures{}
	seq := 0
	window := func(rate int, d time.Duration, name string) error {
		count := n - seq
		if rate > 0 {
			count = rate * int(d.Seconds())
		}
		w0, err := r.fs.written()
		if err != nil {
			return err
		}
		// A bridge that cannot keep the pace (Mosquitto saving its whole
		// database per message) gets half a window more, then the window
		// closes on what it acknowledged.
		limit := d + d/2 + 2*time.Second
		if rate == 0 {
			limit = d
		}
		wctx, cancel := context.WithTimeout(ctx, limit)
		t0 := time.Now()
		err = pub.Run(wctx, seq, seq+count, rate, nil)
		elapsed := time.Since(t0)
		cancel()
		acked := count
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			acked = pub.Acked()
			if rate > 0 {
				b.log("wear %s %s %s: %d of %d acknowledged in %s (%v)", kind, state, name, acked, count, elapsed.Round(time.Millisecond), err)
			}
		}
		if !down {
			// Let the upstream's acknowledgements land, so a message that
			// would go to disk only when it waits too long is judged on
			// what the bridge does, not on the window's end.
			_ = sub.Wait(ctx, seq+acked, 3*time.Second, time.Now(), time.Now().Add(10*time.Second))
		}
		seq += count
		w1, err := r.fs.written()
		if err != nil {
			return err
		}
		if acked == 0 {
			return fmt.Errorf("%s %s: nothing acknowledged in %s", state, name, elapsed.Round(time.Millisecond))
		}
		key := "wear." + state + "." + name
		f[key] = float64(w1-w0) / float64(acked*load.PayloadSize)
		f[key+".rate"] = float64(acked) / elapsed.Seconds()
		return nil
	}
	for _, rate := range wearRates {
		if err := window(rate, w, fmt.Sprint(rate)); err != nil {
			return f, err
		}
	}
	pacedDone()
	if !down {
		return f, nil
	}
	paced.Wait()
	sat.Lock()
	defer sat.Unlock()
	return f, window(0, b.sz.wearSatWindow, "sat")
}

// cpuRates are the rates of the CPU-per-message table, msg/s.
var cpuRates = []int{20, 200, 2000}

// cpuKinds: edgegw as shipped against Mosquitto's bridge.
var cpuKinds = []string{kEdgegwDflt, kMosq}

// cpu: both kinds at once (the same background load for both), link up,
// the bridging process connected straight to its upstream (noProxy):
// idle RSS and CPU after warm-up, then the run time of the bridging
// process's threads (runSeconds) per message at each rate in cpuRates over sz.cpuWindow. Then
// once more at 200 msg/s through the bench's proxy (cpuproxy.200), the
// path of every other table, for comparison: the proxy shares the
// bench's process with the publisher, so Mosquitto's two writes of one
// wake-up (PUBACK to the publisher, PUBLISH upstream) wake that process
// once, where edgegw, which acknowledges only once the upstream has
// (issue 11), writes them a round trip apart and wakes it twice.
func (b *bench) cpu(ctx context.Context) (map[string]figures, error) {
	out, err := b.cpuSet(ctx, true, cpuRates, "cpu", true)
	if err != nil {
		return out, err
	}
	prox, err := b.cpuSet(ctx, false, []int{200}, "cpuproxy", false)
	for k, f := range prox {
		for m, v := range f {
			out[k][m] = v
		}
	}
	return out, err
}

// cpuSet measures cpuKinds at once at rates, their figures named
// prefix.RATE (and prefix.idle.* with idle).
func (b *bench) cpuSet(ctx context.Context, noProxy bool, rates []int, prefix string, idle bool) (map[string]figures, error) {
	n := 0
	for _, rate := range rates {
		n += cpuCount(rate, b.sz.cpuWindow)
	}
	type rigset struct {
		r   *rig
		sub *load.Subscriber
		pub *load.Publisher
	}
	rigs := map[string]*rigset{}
	defer func() {
		for _, s := range rigs {
			s.pub.Close()
			s.sub.Close()
			s.r.close()
		}
	}()
	out := map[string]figures{}
	for _, k := range cpuKinds {
		out[k] = figures{}
		r, sub, pub, err := b.start(ctx, rigOpts{kind: k, noProxy: noProxy}, 1, n, b.sz.window, false)
		if err != nil {
			return out, fmt.Errorf("%s: %w", k, err)
		}
		rigs[k] = &rigset{r, sub, pub}
	}
	if idle {
		c0 := map[string]float64{}
		for k, s := range rigs {
			c0[k] = cpuSeconds(s.r.p.pid())
		}
		t0 := time.Now()
		time.Sleep(b.sz.idleWindow) // idle is the absence of events: a measured span
		for k, s := range rigs {
			cur, _ := rss(s.r.p.pid())
			out[k][prefix+".idle.rss"] = float64(cur) / mib
			out[k][prefix+".idle.cpu"] = 100 * (cpuSeconds(s.r.p.pid()) - c0[k]) / time.Since(t0).Seconds()
		}
	}
	seq := 0
	for _, rate := range rates {
		count := cpuCount(rate, b.sz.cpuWindow) / cpuParts
		per := map[string][]float64{}
		for part := 0; part < cpuParts; part++ {
			var wg sync.WaitGroup
			var mu sync.Mutex
			var errs []error
			for k, s := range rigs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					pid := s.r.p.pid()
					c0 := runSeconds(pid)
					err := s.pub.Run(ctx, seq, seq+count, rate, nil)
					if err == nil {
						err = s.sub.Wait(ctx, seq+count, 5*time.Second, time.Now(), time.Now().Add(30*time.Second))
					}
					c1 := runSeconds(pid)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, fmt.Errorf("%s at %d msg/s: %w", k, rate, err))
						return
					}
					per[k] = append(per[k], (c1-c0)/float64(count)*1e6)
				}()
			}
			wg.Wait()
			if len(errs) > 0 {
				return out, errors.Join(errs...)
			}
			seq += count
		}
		for k, v := range per {
			med, _, _, _ := stat(v)
			out[k][fmt.Sprintf("%s.%d", prefix, rate)] = med
		}
	}
	return out, nil
}

// cpuParts: each rate's window is measured as this many consecutive
// parts and the figure is their median, so that a burst of the machine's
// other work in one part does not make the figure.
const cpuParts = 5

// cpuCount is the messages of a CPU window at rate: w's worth, but at
// least cpuMinMsgs, so that at 20 msg/s the window still holds enough
// wake-ups for the machine's noise to average out.
func cpuCount(rate int, w time.Duration) int {
	return max(rate*int(w.Seconds()), cpuMinMsgs)
}

const cpuMinMsgs = 800

// slowKinds are the columns of the slow-board table.
var slowKinds = []string{kEdgegwDflt, kMosq}

// slowCap is the bridging process's share of one core on the slow board.
const slowCap = 25

// slow: the bridging process in a cgroup capped to slowCap % of one core
// and pinned to CPU 0; the bench (publisher, subscriber) pinned to CPU 1.
// The upstream Mosquitto, the far end in real life, runs where the
// scheduler puts it: pinned beside the load it made that core the limit.
// sz.slow QoS 1 messages as fast as the window allows. Without pinLoad
// the bench runs on any core (the figures are then "slowfree.*"): on a
// shared machine one core is not always enough for the load.
func (b *bench) slow(ctx context.Context, kind string, pinLoad bool) (figures, error) {
	ncpu := runtime.NumCPU()
	if ncpu < 2 {
		return nil, errors.New("the slow-board table needs two cores (one for the bridge, one for the load)")
	}
	n := b.sz.slow
	r, sub, pub, err := b.start(ctx, rigOpts{kind: kind}, 1, n, b.sz.window, false)
	if err != nil {
		return nil, err
	}
	cg, err := newCPUCap(fmt.Sprintf("edgegw-bench-%s-%d", kind, r.p.pid()), slowCap)
	// The cgroup goes once the process in it has.
	defer func() {
		pub.Close()
		sub.Close()
		r.close()
		if cg != nil {
			cg.close()
		}
	}()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	defer func() {
		if err := pin(self, allCPUs(ncpu)...); err != nil {
			b.log("slow: %v", err)
		}
	}()
	pid := r.p.pid()
	for _, step := range []func() error{
		func() error { return cg.add(pid) },
		func() error { return pin(pid, 0) },
		func() error {
			if !pinLoad {
				return nil
			}
			return pin(self, 1)
		},
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	c0 := cpuSeconds(pid)
	t0 := time.Now()
	if err := pub.Run(rctx, 0, n, 0, nil); err != nil {
		return nil, fmt.Errorf("%d of %d acknowledged: %w", pub.Acked(), n, err)
	}
	p := "slow."
	if !pinLoad {
		p = "slowfree."
	}
	f := figures{p + "intake": float64(n) / time.Since(t0).Seconds()}
	werr := sub.Wait(rctx, n, 8*time.Second, t0, t0.Add(120*time.Second))
	c := sub.Count()
	if c.Unique > 0 {
		f[p+"msgs"] = float64(c.Unique) / c.Last.Sub(t0).Seconds()
		f[p+"cpu"] = 100 * (cpuSeconds(pid) - c0) / c.Last.Sub(t0).Seconds()
	}
	f[p+"lost"] = float64(n - c.Unique)
	if werr != nil {
		b.log("slow %s: %v", kind, werr)
	}
	return f, nil
}
