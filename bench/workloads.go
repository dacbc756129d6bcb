package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegw/edgegw/bench/load"
	"github.com/edgegw/edgegw/internal/certs"
)

// sizes are the message counts of each workload.
type sizes struct {
	steady, latency, outage, crash, qos2 int
	fleet, fleetMsgs                     int
	backlog                              int
	window                               int
	// The flash-wear, CPU and slow-board tables: the paced window per
	// rate, the link-down saturation window and its message bound, the
	// CPU window per rate, the idle span, and the slow-board count.
	wearWindow, wearSatWindow time.Duration
	wearSat                   int
	cpuWindow, idleWindow     time.Duration
	slow                      int
}

var full = sizes{steady: 100_000, latency: 3_000, outage: 200_000, crash: 20_000, qos2: 20_000, fleet: 100, fleetMsgs: 1_000, backlog: 1_000_000, window: 500,
	wearWindow: 60 * time.Second, wearSatWindow: 10 * time.Second, wearSat: 600_000, cpuWindow: 20 * time.Second, idleWindow: 5 * time.Second, slow: 100_000}
var quick = sizes{steady: 20_000, latency: 2_000, outage: 50_000, crash: 5_000, qos2: 5_000, fleet: 20, fleetMsgs: 500, backlog: 200_000, window: 500,
	wearWindow: 10 * time.Second, wearSatWindow: 4 * time.Second, wearSat: 250_000, cpuWindow: 8 * time.Second, idleWindow: 3 * time.Second, slow: 30_000}

// bench holds what every workload needs.
type bench struct {
	root string
	pki  certs.Files
	sz   sizes
	log  func(format string, a ...any)
}

type figures map[string]float64

const mib = 1 << 20

func secs(d time.Duration) float64 { return d.Seconds() }

// steady: throughput of sz.steady QoS 1 messages, then latency at 1,000/s.
func (b *bench) steady(ctx context.Context, kind string) (figures, error) {
	n := b.sz.steady
	r, sub, pub, err := b.start(ctx, rigOpts{kind: kind}, 1, n, b.sz.window, true)
	if err != nil {
		return nil, err
	}
	defer r.close()
	defer sub.Close()
	defer pub.Close()
	f := figures{}
	t0 := time.Now()
	if err := pub.Run(ctx, 0, n, 0, nil); err != nil {
		return nil, err
	}
	f["steady.intake"] = float64(n) / secs(time.Since(t0))
	werr := sub.Wait(ctx, n, 3*time.Second, t0, t0.Add(120*time.Second))
	c := sub.Count()
	f["steady.msgs"] = float64(c.Unique) / secs(c.Last.Sub(t0))
	f["steady.lost"] = float64(n - c.Unique)
	if werr != nil {
		b.log("steady %s: %v", kind, werr)
	}
	// Latency at a fixed rate.
	sub.Reset()
	m := b.sz.latency
	t1 := time.Now()
	if err := pub.Run(ctx, 0, m, 1000, nil); err != nil {
		return nil, err
	}
	if err := sub.Wait(ctx, m, 5*time.Second, t1, t1.Add(60*time.Second)); err != nil {
		b.log("latency %s: %v", kind, err)
	}
	p50, p99 := sub.Latencies()
	f["latency.p50"] = float64(p50.Microseconds()) / 1000
	f["latency.p99"] = float64(p99.Microseconds()) / 1000
	return f, nil
}

// outage: link cut, sz.outage messages accepted, link restored.
func (b *bench) outage(ctx context.Context, kind string) (figures, error) {
	n := b.sz.outage
	r, sub, pub, err := b.start(ctx, rigOpts{kind: kind}, 1, n, b.sz.window, false)
	if err != nil {
		return nil, err
	}
	defer r.close()
	defer sub.Close()
	defer pub.Close()
	pid := r.p.pid()
	f := figures{}
	idle, _ := rss(pid)
	f["idle.rss"] = float64(idle) / mib
	r.proxy.Cut()
	s := sampleRSS(pid)
	wb0 := writeBytes(pid)
	t0 := time.Now()
	acked := n
	if err := pub.Run(ctx, 0, n, 0, nil); err != nil {
		// The broker stopped acknowledging: count what it did acknowledge.
		acked = pub.Acked()
		b.log("outage %s: %v after %d acknowledged", kind, err, acked)
		f["outage.stalled"] = 1
	} else {
		f["outage.stalled"] = 0
		f["outage.intake"] = float64(n) / secs(time.Since(t0))
	}
	f["outage.acked"] = float64(acked)
	queued, _ := rss(pid)
	tR, tC := r.restore(reconnectWait)
	if !tC.IsZero() {
		f["outage.reconnected"] = secs(tC.Sub(tR))
	}
	werr := sub.Wait(ctx, acked, 8*time.Second, tC, tR.Add(180*time.Second))
	c := sub.Count()
	peak := s.done()
	f["outage.rss.queued"] = float64(queued) / mib
	f["outage.rss.peak"] = float64(peak) / mib
	f["outage.rss.growth"] = float64(peak-idle) / mib
	f["outage.delivered"] = float64(c.Unique)
	f["outage.lost"] = float64(sub.Missing(0, acked))
	f["outage.spin"] = 0
	if f["outage.lost"] > 0 && spinning(pid) {
		f["outage.spin"] = 1
	}
	f["outage.dup"] = float64(c.Duplicates)
	f["outage.ooo"] = float64(c.OutOfOrder)
	if c.Unique > 0 {
		f["outage.reconnect"] = secs(c.First.Sub(tR))
		f["outage.drain"] = secs(c.Last.Sub(tR))
		from := tR
		if !tC.IsZero() {
			from = tC // the rate once connected, apart from the backoff
		}
		f["outage.drainrate"] = float64(c.Unique) / secs(c.Last.Sub(from))
	}
	f["disk.perbyte"] = float64(writeBytes(pid)-wb0) / float64(n*load.PayloadSize)
	if werr != nil && kind != kMosqDflt {
		b.log("outage %s: %v", kind, werr)
	}
	return f, nil
}

// crash: link cut, sz.crash messages accepted, kill -9, restart, restore.
func (b *bench) crash(ctx context.Context, kind string) (figures, error) {
	n := b.sz.crash
	r, sub, pub, err := b.start(ctx, rigOpts{kind: kind}, 1, n, b.sz.window, false)
	if err != nil {
		return nil, err
	}
	defer r.close()
	defer sub.Close()
	// pub is closed below, where the workload needs it gone.
	r.proxy.Cut()
	acked := n
	if err := pub.Run(ctx, 0, n, 0, nil); err != nil {
		acked = pub.Acked()
		b.log("crash %s: %v after %d acknowledged", kind, err, acked)
	}
	pub.Close()
	r.p.kill()
	r.p = nil
	if err := r.start(); err != nil {
		return nil, fmt.Errorf("restart after kill -9: %w", err)
	}
	tR, tC := r.restore(reconnectWait)
	_ = sub.Wait(ctx, acked, 8*time.Second, tC, tR.Add(120*time.Second))
	c := sub.Count()
	return figures{"crash.acked": float64(acked), "crash.delivered": float64(c.Unique), "crash.lost": float64(sub.Missing(0, acked)), "crash.dup": float64(c.Duplicates)}, nil
}

// qos2Window is the publisher window of the QoS 2 workload, for both.
const qos2Window = 20

// qos2: QoS 2 end to end with 5 link cuts while sz.qos2 messages flow.
func (b *bench) qos2(ctx context.Context, kind string) (figures, error) {
	// Five cuts need five reconnects: both bridges get a quick backoff
	// here (edgegw backoff_max 2 s, Mosquitto restart_timeout 1 2).
	n := b.sz.qos2
	// Mosquitto refuses (disconnects) a 3.1.1 publisher with more incoming
	// QoS 2 messages in flight than max_inflight_messages (default 20).
	r, sub, pub, err := b.start(ctx, rigOpts{kind: kind, qos: 2, backoffMax: "2s", mosqRestart: "1 2"}, 2, n, qos2Window, false)
	if err != nil {
		return nil, err
	}
	defer r.close()
	defer sub.Close()
	defer pub.Close()
	var sent atomic.Int64
	var cuts atomic.Int64
	cctx, stopCuts := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 1; k <= 5; k++ {
			// Cut when the k-th sixth of the messages has reached the
			// bridge, or at once if the publisher is already done; then
			// wait for the bridge to reconnect before the next cut.
			for sent.Load() < int64(k*n/6) && cctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
			if cctx.Err() != nil {
				return
			}
			a := r.proxy.Accepted()
			r.proxy.Cut()
			cuts.Add(1)
			time.Sleep(300 * time.Millisecond) // the outage itself
			r.proxy.Restore()
			for end := time.Now().Add(5 * time.Second); r.proxy.Accepted() == a && time.Now().Before(end) && cctx.Err() == nil; {
				time.Sleep(5 * time.Millisecond)
			}
			if r.proxy.Accepted() == a {
				b.log("qos2 %s: the bridge did not reconnect within 5 s of restore %d; no more cuts", kind, k)
				return
			}
		}
	}()
	acked := n
	if err := pub.Run(ctx, 0, n, 0, func(k int) { sent.Store(int64(k)) }); err != nil {
		acked = pub.Acked()
		b.log("qos2 %s: %v after %d acknowledged", kind, err, acked)
		sent.Store(int64(n))
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		b.log("qos2 %s: cutter did not finish in 60s", kind)
	}
	stopCuts()
	wg.Wait()
	t := time.Now()
	_ = sub.Wait(ctx, acked, 8*time.Second, t, t.Add(120*time.Second))
	c := sub.Count()
	spin := 0.0
	if c.Unique < acked && spinning(r.p.pid()) {
		spin = 1
	}
	return figures{"qos2.spin": spin, "qos2.acked": float64(acked), "qos2.lost": float64(sub.Missing(0, acked)), "qos2.dup": float64(c.Duplicates), "qos2.ooo": float64(c.OutOfOrder), "qos2.cuts": float64(cuts.Load())}, nil
}

// fleet: sz.fleet edgegw processes behind one proxy, cut and restored
// together.
func (b *bench) fleet(ctx context.Context, replayRate int) (figures, error) {
	dir, err := os.MkdirTemp(b.root, "fleet-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if !keepDirs {
			os.RemoveAll(dir)
		}
	}()
	up, px, err := startUpstream(dir, b.pki)
	if err != nil {
		return nil, err
	}
	defer up.Stop()
	defer px.Close()
	k, m := b.sz.fleet, b.sz.fleetMsgs
	rigs := make([]*rig, 0, k)
	defer func() {
		var wg sync.WaitGroup
		for _, r := range rigs {
			wg.Add(1)
			go func() { defer wg.Done(); r.close() }()
		}
		wg.Wait()
	}()
	for i := range k {
		r, err := newRig(dir, b.pki, rigOpts{kind: kEdgegw, up: up, proxy: px, id: fmt.Sprintf("f%03d", i), replayRate: replayRate, backoffMax: "5s"})
		if err != nil {
			return nil, fmt.Errorf("fleet instance %d: %w", i, err)
		}
		rigs = append(rigs, r)
	}
	for end := time.Now().Add(60 * time.Second); px.Accepted() < uint64(k); {
		if time.Now().After(end) {
			return nil, fmt.Errorf("fleet: only %d of %d instances connected upstream in 60s", px.Accepted(), k)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sub, err := rigs[0].subscribe(1, k, m, false)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	// The upstream's own count of PUBLISHes received: its ingress rate,
	// which the subscriber's arrival times (buffered) do not show.
	ctr, err := load.WatchCounter(load.Conn{Addr: up.Addr(), TLS: clientFiles(b.pki, "sub"), ClientID: "sys-watch"}, "$SYS/broker/publish/messages/received")
	if err != nil {
		return nil, err
	}
	defer ctr.Close()
	px.Cut()
	// Publish m messages to each instance, four instances at a time.
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	var perr atomic.Pointer[error]
	for i, r := range rigs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pub, err := load.NewPublisher(r.pubConn(fmt.Sprintf("pub-%d", i)), "readings/fleet", 1, b.sz.window)
			if err == nil {
				pub.Src = i
				err = pub.Run(ctx, 0, m, 0, nil)
				pub.Close()
			}
			if err != nil {
				perr.Store(&err)
			}
		}()
	}
	wg.Wait()
	if e := perr.Load(); e != nil {
		return nil, fmt.Errorf("fleet publish: %w", *e)
	}
	// Sample upstream connects every 50 ms from the restore on.
	type sample struct {
		t time.Duration
		n uint64
	}
	var samples []sample
	a0 := px.Accepted()
	tR := time.Now()
	px.Restore()
	sctx, stopSampling := context.WithCancel(ctx)
	sdone := make(chan struct{})
	go func() {
		defer close(sdone)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			samples = append(samples, sample{time.Since(tR), px.Accepted() - a0})
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	werr := sub.Wait(ctx, k*m, 15*time.Second, tR, tR.Add(180*time.Second))
	stopSampling()
	<-sdone
	c := sub.Count()
	ctr.WaitAfter(c.Last, 3*time.Second) // the sample that covers the end
	peak := uint64(0)
	j := 0
	for i := range samples {
		for samples[i].t-samples[j].t > time.Second {
			j++
		}
		peak = max(peak, samples[i].n-samples[j].n)
	}
	if len(samples) > 0 {
		peak = max(peak, samples[0].n) // connects within the first sample
	}
	if werr != nil {
		b.log("fleet replay_rate=%d: %v", replayRate, werr)
	}
	f := figures{
		"fleet.connects": float64(peak),
		"fleet.lost":     float64(k*m - c.Unique),
		"fleet.peakmsgs": ctr.PeakRate(tR),
	}
	if c.Unique > 0 {
		f["fleet.drain"] = secs(c.Last.Sub(tR))
	}
	return f, nil
}

var tookRe = regexp.MustCompile(`msg="outbox open".*took=(\S+)`)

// backlog: issue 3 point 6 — sz.backlog messages queued during an outage.
func (b *bench) backlog(ctx context.Context) (figures, error) {
	n := b.sz.backlog
	r, sub, pub, err := b.start(ctx, rigOpts{kind: kEdgegw}, 1, n, b.sz.window, false)
	if err != nil {
		return nil, err
	}
	defer r.close()
	defer sub.Close()
	// pub is closed below, where the workload needs it gone.
	pid := r.p.pid()
	f := figures{}
	idle, _ := rss(pid)
	f["bl.idle"] = float64(idle) / mib
	r.proxy.Cut()
	s := sampleRSS(pid)
	wb0 := writeBytes(pid)
	t0 := time.Now()
	err = pub.Run(ctx, 0, n, 0, nil)
	pub.Close()
	if err != nil {
		s.done()
		return nil, err
	}
	f["bl.intake"] = float64(n) / secs(time.Since(t0))
	peak := s.done()
	f["bl.peak"] = float64(peak) / mib
	f["bl.growth"] = float64(peak-idle) / mib
	f["bl.perbyte.intake"] = float64(writeBytes(pid)-wb0) / float64(n*load.PayloadSize)
	r.p.stop()
	r.p = nil
	before, _ := os.ReadFile(r.logPath)
	ts := time.Now()
	if err := r.start(); err != nil {
		return nil, fmt.Errorf("restart with backlog: %w", err)
	}
	f["bl.start"] = secs(time.Since(ts))
	// The "outbox open" line of the second start.
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		logText, _ := os.ReadFile(r.logPath)
		if len(logText) > len(before) {
			if mm := tookRe.FindStringSubmatch(string(logText[len(before):])); mm != nil {
				if d, err := time.ParseDuration(mm[1]); err == nil {
					f["bl.took"] = secs(d)
				}
				break
			}
		}
	}
	pid = r.p.pid()
	restarted, _ := rss(pid)
	f["bl.restart.rss"] = float64(restarted) / mib
	s = sampleRSS(pid)
	wb1 := writeBytes(pid)
	tR, tC := r.restore(reconnectWait)
	werr := sub.Wait(ctx, n, 15*time.Second, tC, tR.Add(300*time.Second))
	c := sub.Count()
	f["bl.drain.peak"] = float64(s.done()) / mib
	f["bl.lost"] = float64(n - c.Unique)
	f["bl.dup"] = float64(c.Duplicates)
	if c.Unique > 0 {
		from := tR
		if !tC.IsZero() {
			from = tC
		}
		f["bl.drainrate"] = float64(c.Unique) / secs(c.Last.Sub(from))
	}
	f["bl.perbyte.drain"] = float64(writeBytes(pid)-wb1) / float64(n*load.PayloadSize)
	if werr != nil {
		b.log("backlog: %v", werr)
	}
	return f, nil
}

func sortedKeys(m map[string]float64) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}

// start makes a rig, an upstream subscriber expecting n messages and a
// publisher with the given window at qos, and warms them up. The caller
// closes all three.
func (b *bench) start(ctx context.Context, o rigOpts, qos byte, n, window int, latency bool) (*rig, *load.Subscriber, *load.Publisher, error) {
	r, err := newRig(b.root, b.pki, o)
	if err != nil {
		return nil, nil, nil, err
	}
	sub, err := r.subscribe(qos, 1, n, latency)
	if err != nil {
		r.close()
		return nil, nil, nil, err
	}
	pub, err := load.NewPublisher(r.pubConn("pub"), "readings/bench", qos, window)
	if err != nil {
		sub.Close()
		r.close()
		return nil, nil, nil, err
	}
	if err := warm(ctx, pub, sub, 20*time.Second); err != nil {
		pub.Close()
		sub.Close()
		r.close()
		return nil, nil, nil, err
	}
	return r, sub, pub, nil
}
