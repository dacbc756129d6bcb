package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgegw/edgegw/bridge"
	"github.com/edgegw/edgegw/bridge/deadletter"
	"github.com/edgegw/edgegw/bridge/outbox"
	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/internal/tlsdiag"
	"github.com/edgegw/edgegw/internal/tlsx"
)

// running is one Run's parts, made by its steps in order.
type running struct {
	g    *Gateway
	seqs *seqStore
	ob   *outbox.Outbox // nil without [upstream]
	ring *outbox.Ring
	dl   *deadletter.Store // nil without [upstream] or when it cannot be opened
	bk   localBroker
	br   *bridge.Bridge // nil without [upstream]
	eco  *ecosystem     // availability, Home Assistant, Sparkplug (ecosystem.go)
}

// steps is the start order; the stop order is its reverse (see the package
// documentation for why this order).
func (r *running) steps() []step {
	return []step{
		{name: "data_dir", start: r.startDataDir},
		{name: "outbox", start: r.startOutbox, budget: 10 * time.Second}, // its stop fsyncs what is queued
		{name: "deadletter", start: r.startDeadLetter},
		{name: "bridge", start: r.startBridge},
		{name: "broker", start: r.startBroker},
		{name: "ecosystem", start: r.startEcosystem},
		{name: "ops", start: r.startOps},
		{name: "uplink", start: r.startUplink},
		{name: "devices", start: r.startDevices},
		{name: "outbox waits", start: r.startReleaseWaits},
	}
}

// Run starts everything and runs until ctx ends, then stops in order.
func (g *Gateway) Run(ctx context.Context) (err error) {
	g.initOps()
	r := &running{g: g}
	life := &lifecycle{log: g.log.With("component", "lifecycle"), trace: g.stopTrace, budget: g.stopBudget}
	defer func() {
		if serr := life.stop(); serr != nil {
			if err == nil {
				err = serr
			} else {
				g.log.Error("stopping after a failed start", "error", serr)
			}
		}
	}()
	for _, s := range r.steps() {
		if err := life.start(ctx, s); err != nil {
			return err
		}
	}
	g.mu.Lock()
	g.ready = true
	g.mu.Unlock()
	g.log.Info("edgegw running", "gateway", g.cfg.Gateway.ID, "devices", len(g.devices), "broker", r.bk.Addr("tcp"), "upstream", endpointsString(g.eps))
	if g.Ready != nil {
		g.Ready()
	}
	g.notifyReady()

	<-ctx.Done()
	g.log.Info("stopping")
	g.mu.Lock()
	g.ready = false
	g.mu.Unlock()
	return nil
}

// startDataDir makes data_dir and opens the per-device sequence numbers.
func (r *running) startDataDir(context.Context) (func() error, error) {
	dir := r.g.cfg.Gateway.DataDir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("gateway: data_dir: %w", err)
	}
	seqs, err := openSeqStore(dir)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	r.seqs = seqs
	return func() error {
		if err := seqs.close(); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		return nil
	}, nil
}

// startOutbox opens the outbox first: the broker hands it messages as soon
// as it listens. Its stop writes and fsyncs what is queued.
func (r *running) startOutbox(context.Context) (func() error, error) {
	cfg := r.g.cfg
	if cfg.Upstream == nil {
		return nil, nil
	}
	full, _ := outbox.ParseFullPolicy(cfg.Buffer.FullPolicy)
	fs, _ := outbox.ParseFsyncMode(cfg.Buffer.Fsync)
	dur, _ := outbox.ParseDurability(cfg.Buffer.Durability)
	start := time.Now()
	ob, err := outbox.Open(outbox.Options{
		Dir:            filepath.Join(cfg.Gateway.DataDir, "outbox"),
		SegmentBytes:   cfg.Buffer.SegmentBytes.Bytes,
		MaxBytes:       cfg.Buffer.MaxBytes.Bytes,
		MaxAge:         cfg.Buffer.MaxAge.Duration,
		Full:           full,
		Fsync:          fs,
		FsyncInterval:  cfg.Buffer.FsyncInterval.Duration,
		Durability:     dur,
		SpillAfter:     cfg.Buffer.SpillAfter.Duration,
		MemoryBytes:    cfg.Buffer.MemoryBytes.Bytes,
		CommitInterval: cfg.Buffer.CommitInterval.Duration,
		Logger:         r.g.log.With("component", "outbox"),
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	st := ob.Stats()
	r.g.log.Info("outbox open", "backlog", st.Messages, "backlog_bytes", st.Bytes, "took", time.Since(start).Round(time.Millisecond))
	r.ob = ob
	r.ring = outbox.NewRing(int(cfg.Buffer.QoS0MaxBytes.Bytes))
	r.g.mu.Lock()
	r.g.outbox = ob
	r.g.mu.Unlock()
	return ob.Close, nil
}

// startDeadLetter opens the store of messages the upstream broker refused
// for good. The rest of the gateway does not depend on it: if it cannot be
// opened the gateway runs without (such messages are then dropped and
// counted).
func (r *running) startDeadLetter(context.Context) (func() error, error) {
	cfg := r.g.cfg
	log := r.g.log
	if cfg.Upstream == nil {
		return nil, nil
	}
	dl, err := deadletter.Open(deadletter.Options{Dir: DeadLetterDir(cfg.Gateway.DataDir)})
	switch {
	case err != nil:
		log.Error("the dead-letter store cannot be opened; messages the upstream broker refuses for good are dropped and counted", "error", err)
		return nil, nil
	case dl.Damaged() != "":
		log.Error("the dead-letter store had a damaged record; the entries before it are kept and the damaged file is kept aside", "file", dl.Damaged())
	}
	if n := dl.Stats().Entries; n > 0 {
		log.Warn("messages the upstream broker refused are waiting in the dead-letter store (edgegw deadletter list)", "entries", n)
	}
	r.dl = dl
	return dl.Close, nil
}

// ackBatcher is the embedded broker's HoldAcks/ReleaseAcks as the bridge's
// Batch (nil for the external broker, which acknowledges by itself).
func ackBatcher(bk localBroker) bridge.Batcher {
	if b, ok := bk.(*broker.Broker); ok {
		return brokerBatch{b}
	}
	return nil
}

type brokerBatch struct{ b *broker.Broker }

func (x brokerBatch) Hold()    { x.b.HoldAcks() }
func (x brokerBatch) Release() { x.b.ReleaseAcks() }

// startBridge makes the local broker and the bridge (no I/O yet) and hooks
// the bridge into the broker. Nothing to stop: the broker stops in its own
// step, and the bridge's intake is released by the first stop of all
// ("outbox waits").
func (r *running) startBridge(context.Context) (func() error, error) {
	g := r.g
	bk, err := g.newLocalBroker()
	if err != nil {
		return nil, err
	}
	r.bk = bk
	eco := g.newEcosystem(bk)
	r.eco = eco
	u := g.cfg.Upstream
	if u == nil {
		return nil, nil
	}
	clientID := u.ClientID
	if clientID == "" {
		clientID = "edgegw-" + g.cfg.Gateway.ID
	}
	version := byte(4)
	if u.Protocol == "5" {
		version = 5
	}
	var password []byte
	if u.PasswordFile != "" {
		if password, err = tlsx.ReadPassword(u.PasswordFile); err != nil {
			return nil, fmt.Errorf("gateway: upstream.password_file: %w", err)
		}
	}
	tlsOpts := g.tlsOpts
	blog := g.log.With("component", "bridge")
	br := bridge.New(bridge.Options{
		Endpoints:      g.eps,
		TLS:            func() (*tls.Config, error) { return tlsx.ClientConfig(tlsOpts, blog) },
		ClientID:       clientID,
		Username:       u.Username,
		Password:       password,
		CleanSession:   u.CleanSession,
		Keepalive:      u.Keepalive.Duration,
		Version:        version,
		Inflight:       u.Inflight,
		ReplayRate:     u.ReplayRate,
		MaxPayload:     int(u.MaxPayload.Bytes),
		BackoffMin:     u.BackoffMin.Duration,
		BackoffMax:     u.BackoffMax.Duration,
		ConnectTimeout: u.ConnectTimeout.Duration,
		LiveFirst:      u.LiveFirst,
		Rules:          g.rules,
		Dial:           beatDialer(g.ops.bridgeHeart),
		Outbox:         r.ob,
		QoS0:           r.ring,
		DeadLetter:     r.dl,
		Deliver: func(topic string, payload []byte, qos byte, retain bool) error {
			return bk.Deliver(broker.Message{Topic: topic, Payload: payload, QoS: qos, Retain: retain})
		},
		Explain: func(err error, addr string) string {
			cause, hint := tlsdiag.ExplainSession(err, tlsOpts, addr, tlsdiag.Session{Version: version, Username: u.Username})
			if hint != "" {
				return cause + " — " + hint
			}
			return cause
		},
		Logger:    blog,
		Will:      eco.will(),
		OnConnect: eco.onConnect(),
		Batch:     ackBatcher(bk),
	})
	bk.SetInterceptor(interceptor{br})
	r.br = br
	return nil, nil
}

// startBroker starts the local broker's listeners (or the client of the
// external one). Its stop disconnects the local clients.
func (r *running) startBroker(context.Context) (func() error, error) {
	if err := r.bk.Start(); err != nil {
		return nil, err
	}
	r.g.mu.Lock()
	r.g.broker, r.g.bridge = r.bk, r.br
	r.g.mu.Unlock()
	return r.bk.Close, nil
}

// startEcosystem publishes the gateway's availability and Home Assistant
// configs and starts Sparkplug, once the broker runs.
func (r *running) startEcosystem(ctx context.Context) (func() error, error) {
	stop, err := r.eco.start(ctx)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	r.g.mu.Lock()
	r.g.eco = r.eco
	r.g.mu.Unlock()
	return func() error { stop(); return nil }, nil
}

// startOps starts systemd notify and watchdog, the liveness probe and the
// health and metrics endpoint.
func (r *running) startOps(ctx context.Context) (func() error, error) {
	stop, err := r.g.startOps(ctx, r.bk)
	if err != nil {
		return nil, err
	}
	return func() error { stop(); return nil }, nil
}

// startUplink runs the upstream session and the certificate watch. Its stop
// says DISCONNECT (within a second, however stalled the link); what is not
// acknowledged stays in the outbox.
func (r *running) startUplink(ctx context.Context) (func() error, error) {
	if r.br == nil {
		return nil, nil
	}
	g := r.g
	uctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = r.br.Run(uctx)
	}()
	if r.dl != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveDeadLetters(uctx, r.dl, r.ob, g.log.With("component", "deadletter"))
		}()
	}
	if g.cfg.Upstream.TLS != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.watchCerts(uctx, g.tlsOpts)
		}()
	}
	return func() error { cancel(); wg.Wait(); return nil }, nil
}

// startDevices runs each device under its supervisor, with its command
// subscription. Its stop cancels them and waits until every driver returned.
func (r *running) startDevices(ctx context.Context) (func() error, error) {
	g := r.g
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var unsubscribe []func()
	stop := func() error {
		cancel()
		for _, u := range unsubscribe {
			u()
		}
		wg.Wait()
		return nil
	}
	for _, d := range g.devices {
		last, skipped, err := r.seqs.open(d.name)
		if err != nil {
			_ = stop()
			return nil, fmt.Errorf("gateway: %w", err)
		}
		if skipped {
			d.log.Warn("the gateway did not stop cleanly (kill, crash or power cut); seq resumes after the numbers it had reserved, so no number repeats, and readings that were only in memory are lost: the gap in seq shows them", "resumes_at", last+1, "max_gap", powerLossSkip)
		}
		d.seqs, d.gwID, d.bk = r.seqs, g.cfg.Gateway.ID, r.bk
		d.avail.notify = r.eco.deviceNotify(d.name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.supervise(dctx)
		}()
		if cmd, ok := d.dev.(devices.Commander); ok {
			u, err := d.subscribeCommands(dctx, &wg, r.bk, cmd)
			if err != nil {
				g.log.Warn("commands for this device are off", "device", d.name, "error", err)
			} else {
				unsubscribe = append(unsubscribe, u)
			}
		}
	}
	return stop, nil
}

// startReleaseWaits starts nothing. Its stop, the first of all, ends every
// wait for outbox space (full_policy = "block" with a full buffer), so
// devices and local publishers held back by a full buffer return at once
// and can stop; what they were publishing is refused, counted and logged
// (a local client gets no acknowledgement and resends it later).
func (r *running) startReleaseWaits(context.Context) (func() error, error) {
	if r.br == nil {
		return nil, nil
	}
	return func() error { r.br.Close(); return nil }, nil
}
