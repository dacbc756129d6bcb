// Package gateway runs edgegw: it builds the parts from a checked
// configuration and runs them with one life each (build → start → stop), in
// the order the data flows backwards: the outbox and local broker first, then
// the bridge, then the devices; on shutdown the devices stop first and the
// outbox is closed last, so nothing accepted is left half-written.
//
// Concurrency of device supervision and ops. Each device has one
// supervisor goroutine (device.go) that runs the driver, turns a panic into
// an error and restarts it with a backoff of 250 ms to 10 s; it blocks only
// in the driver's Run and in that wait, and ends when its context does.
// emit runs on the driver's goroutines under the device's own lock (its
// readings are numbered and published in order): the clock stamp, the seq
// number (one write and fdatasync per block of 1000, under that device's
// file lock only), the encoding, and Publish, which may block as the devices
// package says; the device's busy heart is stale when one emit takes over
// 60 s, unless the buffer is full under full_policy "block". A command
// subscription's handler runs on the publisher's goroutine and only queues
// (at most 16 per device; more are dropped, logged and counted as
// commands_dropped); one goroutine per commandable device applies them in
// order. The ops loops (ops.go: broker probe, STATUS=/WATCHDOG=1, SIGHUP)
// and the HTTP server are goroutines startOps owns and its stop waits for
// (the HTTP shutdown bounded to 2 s). Status, the HTTP handlers and the
// metrics take Gateway.mu only to copy the component pointers and read
// counters: they never wait for a device, the broker or the network (the
// metrics read /proc and, at most once a minute, the certificates). A
// reload runs on the SIGHUP goroutine and changes only the log level
// (a slog.LevelVar).
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edgegw/edgegw/boards"
	"github.com/edgegw/edgegw/bridge"
	"github.com/edgegw/edgegw/bridge/deadletter"
	"github.com/edgegw/edgegw/bridge/outbox"
	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/gateway/config"
	"github.com/edgegw/edgegw/internal/ratelog"
	"github.com/edgegw/edgegw/internal/tlsdiag"
	"github.com/edgegw/edgegw/internal/tlsx"
)

// Gateway is a built gateway, ready to Run.
type Gateway struct {
	cfg     *config.Config
	log     *slog.Logger
	devices []*deviceRunner
	tlsOpts tlsx.Options
	board   string
	rules   []bridge.Rule
	eps     []bridge.Endpoint

	// set while running
	mu     sync.Mutex
	broker localBroker // embedded or external (localbroker.go)
	bridge *bridge.Bridge
	outbox *outbox.Outbox
	ready  bool
	certs  []tlsx.CertInfo
	eco    *ecosystem

	// Ready, when set, is called once everything is up (systemd READY=1).
	Ready func()

	// LogLevel, when set, is the level the logger filters with; SIGHUP
	// sets it from the reloaded file.
	LogLevel *slog.LevelVar

	ops ops // systemd notify and watchdog, liveness, HTTP, clock (ops.go)
}

// Build checks everything that can be checked without starting: each
// device's driver configuration, the bridge rules and the TLS files. It
// returns every problem found, each naming the file, line and key.
func Build(cfg *config.Config, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.Default()
	}
	// Warnings that can repeat per message or per connection (an
	// unsolicited upstream message, a refused publish) are rate-limited
	// with "N similar suppressed" summaries, everywhere (internal/ratelog).
	log = ratelog.Wrap(log)
	g := &Gateway{cfg: cfg, log: log}
	var errs config.Errors
	board := cfg.Gateway.Board
	add := func(err error) {
		var es config.Errors
		var e *config.Error
		switch {
		case errors.As(err, &es):
			errs = append(errs, es...)
		case errors.As(err, &e):
			errs = append(errs, e)
		default:
			errs = append(errs, &config.Error{File: cfg.File(), Msg: err.Error()})
		}
	}
	if board == "" {
		if model, err := boards.ReadModel(boards.ModelPath); err == nil {
			if b, ok := boards.Detect(model); ok {
				board = b.Name
				log.Info("board detected", "board", b.Name, "model", model)
			}
		}
	} else if _, ok := boards.ByName(board); !ok {
		errs = append(errs, cfg.ErrorAt("gateway.board", fmt.Sprintf("%q is not a board edgegw knows; known: %v (run 'edgegw boards')", board, boards.Names())))
	}
	g.board = board
	for i := range cfg.Devices {
		dc := &cfg.Devices[i]
		drv, ok := devices.Lookup(dc.Type)
		if !ok {
			add(cfg.ErrorAt(dc.Path()+".type", fmt.Sprintf("%q is not a device type this edgegw knows; known: %v", dc.Type, devices.Types())))
			continue
		}
		dlog := log.With("component", "device", "device", dc.Name)
		dev, err := drv.New(devices.Env{Name: dc.Name, Logger: dlog, Board: board}, dc.Decode)
		if err != nil {
			add(dc.DeviceError(err))
			continue
		}
		g.devices = append(g.devices, &deviceRunner{name: dc.Name, typ: dc.Type, topic: dc.Topic, qos: byte(dc.QoS), dev: dev, log: dlog})
	}
	if u := cfg.Upstream; u != nil {
		for _, a := range u.Address {
			useTLS, hp, err := config.ParseAddress(a)
			if err != nil {
				continue // reported by config
			}
			g.eps = append(g.eps, bridge.Endpoint{Addr: hp, TLS: useTLS})
		}
		for _, t := range u.Topics {
			dir, _ := bridge.ParseDirection(t.Direction)
			g.rules = append(g.rules, bridge.Rule{Pattern: t.Pattern, Direction: dir, QoS: byte(t.QoS), LocalPrefix: t.LocalPrefix, RemotePrefix: t.RemotePrefix})
			if t.QoS == 2 && u.CleanSession {
				log.Warn("a QoS 2 rule with clean_session = true cannot be exactly once across reconnects: the broker forgets which messages it has; set clean_session = false", "pattern", t.Pattern)
			}
		}
		g.rules = append(g.rules, g.ecosystemRules()...)
		if u.TLS != nil {
			g.tlsOpts = tlsOptions(u.TLS)
			if _, err := tlsx.ClientConfig(g.tlsOpts, slog.New(slog.DiscardHandler)); err != nil {
				add(cfg.ErrorAt("upstream.tls", err.Error()))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return g, nil
}

// TLSOptions maps a TLS table of the configuration onto the loader's options.
func TLSOptions(t *config.TLS) tlsx.Options { return tlsOptions(t) }

func tlsOptions(t *config.TLS) tlsx.Options {
	return tlsx.Options{
		CAFile: t.CAFile, CAPath: t.CAPath, CertFile: t.CertFile, KeyFile: t.KeyFile,
		KeyPasswordFile: t.KeyfilePasswordFile, MinVersion: normVersion(t.TLSVersion),
		ServerName: t.ServerName, Insecure: t.Insecure,
	}
}

func normVersion(v string) string {
	switch v {
	case "tlsv1.3", "1.3":
		return "1.3"
	}
	return "1.2"
}

// Run starts everything and runs until ctx ends, then stops in order.
func (g *Gateway) Run(ctx context.Context) (err error) {
	cfg := g.cfg
	log := g.log
	g.initOps()
	if err := os.MkdirAll(cfg.Gateway.DataDir, 0o750); err != nil {
		return fmt.Errorf("gateway: data_dir: %w", err)
	}
	seqs, err := openSeqStore(cfg.Gateway.DataDir)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer func() {
		if cerr := seqs.close(); cerr != nil && err == nil {
			err = fmt.Errorf("gateway: %w", cerr)
		}
	}()

	// The outbox first: the broker hands it messages as soon as it listens.
	var ob *outbox.Outbox
	var ring *outbox.Ring
	var dl *deadletter.Store
	if cfg.Upstream != nil {
		full, _ := outbox.ParseFullPolicy(cfg.Buffer.FullPolicy)
		fs, _ := outbox.ParseFsyncMode(cfg.Buffer.Fsync)
		dur, _ := outbox.ParseDurability(cfg.Buffer.Durability)
		start := time.Now()
		ob, err = outbox.Open(outbox.Options{
			Dir:           filepath.Join(cfg.Gateway.DataDir, "outbox"),
			SegmentBytes:  cfg.Buffer.SegmentBytes.Bytes,
			MaxBytes:      cfg.Buffer.MaxBytes.Bytes,
			MaxAge:        cfg.Buffer.MaxAge.Duration,
			Full:          full,
			Fsync:         fs,
			FsyncInterval: cfg.Buffer.FsyncInterval.Duration,
			Durability:    dur,
			SpillAfter:    cfg.Buffer.SpillAfter.Duration,
			MemoryBytes:   cfg.Buffer.MemoryBytes.Bytes,
			Logger:        log.With("component", "outbox"),
		})
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		defer func() {
			if cerr := ob.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("gateway: %w", cerr)
			}
		}()
		st := ob.Stats()
		log.Info("outbox open", "backlog", st.Messages, "backlog_bytes", st.Bytes, "took", time.Since(start).Round(time.Millisecond))
		ring = outbox.NewRing(int(cfg.Buffer.QoS0MaxBytes.Bytes))
		var dlErr error
		dl, dlErr = deadletter.Open(deadletter.Options{Dir: DeadLetterDir(cfg.Gateway.DataDir)})
		switch {
		case dlErr != nil:
			// The rest of the gateway does not depend on it: run without.
			log.Error("the dead-letter store cannot be opened; messages the upstream broker refuses for good are dropped and counted", "error", dlErr)
			dl = nil
		case dl.Damaged() != "":
			log.Error("the dead-letter store had a damaged record; the entries before it are kept and the damaged file is kept aside", "file", dl.Damaged())
		}
		if dl != nil {
			defer dl.Close()
			if n := dl.Stats().Entries; n > 0 {
				log.Warn("messages the upstream broker refused are waiting in the dead-letter store (edgegw deadletter list)", "entries", n)
			}
		}
	}

	bk, err := g.newLocalBroker()
	if err != nil {
		return err
	}
	eco := g.newEcosystem(bk)
	var br *bridge.Bridge
	if cfg.Upstream != nil {
		u := cfg.Upstream
		clientID := u.ClientID
		if clientID == "" {
			clientID = "edgegw-" + cfg.Gateway.ID
		}
		version := byte(4)
		if u.Protocol == "5" {
			version = 5
		}
		var password []byte
		if u.PasswordFile != "" {
			if password, err = tlsx.ReadPassword(u.PasswordFile); err != nil {
				return fmt.Errorf("gateway: upstream.password_file: %w", err)
			}
		}
		tlsOpts := g.tlsOpts
		blog := log.With("component", "bridge")
		br = bridge.New(bridge.Options{
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
			Outbox:         ob,
			QoS0:           ring,
			DeadLetter:     dl,
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
		})
		defer br.Close()
		bk.SetInterceptor(interceptor{br})
	}
	if err := bk.Start(); err != nil {
		return err
	}
	defer bk.Close()
	stopEco, err := eco.start(ctx)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer stopEco()
	g.mu.Lock()
	g.broker, g.bridge, g.outbox, g.eco = bk, br, ob, eco
	g.mu.Unlock()
	stopOps, err := g.startOps(ctx, bk)
	if err != nil {
		return err
	}
	defer stopOps()

	var wg sync.WaitGroup
	defer wg.Wait()
	bctx, stopBridge := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBridge()
	if br != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = br.Run(bctx)
		}()
		if dl != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveDeadLetters(bctx, dl, ob, log.With("component", "deadletter"))
			}()
		}
		if cfg.Upstream.TLS != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.watchCerts(bctx, g.tlsOpts)
			}()
		}
	}

	dctx, stopDevices := context.WithCancel(ctx)
	var dwg sync.WaitGroup
	for _, d := range g.devices {
		last, skipped, err := seqs.open(d.name)
		if err != nil {
			stopDevices()
			dwg.Wait()
			return fmt.Errorf("gateway: %w", err)
		}
		if skipped {
			d.log.Warn("the gateway did not stop cleanly (kill, crash or power cut); seq resumes after the numbers it had reserved, so no number repeats, and readings that were only in memory are lost: the gap in seq shows them", "resumes_at", last+1, "max_gap", powerLossSkip)
		}
		d.seqs, d.gwID, d.bk = seqs, cfg.Gateway.ID, bk
		d.avail.notify = eco.deviceNotify(d.name)
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			d.supervise(dctx)
		}()
		if cmd, ok := d.dev.(devices.Commander); ok {
			cancel, err := d.subscribeCommands(dctx, &dwg, bk, cmd)
			if err != nil {
				log.Warn("commands for this device are off", "device", d.name, "error", err)
			} else {
				defer cancel()
			}
		}
	}
	g.mu.Lock()
	g.ready = true
	g.mu.Unlock()
	log.Info("edgegw running", "gateway", cfg.Gateway.ID, "devices", len(g.devices), "broker", bk.Addr("tcp"), "upstream", endpointsString(g.eps))
	if g.Ready != nil {
		g.Ready()
	}
	g.notifyReady()

	<-ctx.Done()
	log.Info("stopping")
	stopDevices()
	dwg.Wait()
	// Devices are quiet; give the bridge a moment to pass on what is in
	// flight, then stop it. What is not acknowledged stays in the outbox.
	stopBridge()
	return nil
}

func endpointsString(eps []bridge.Endpoint) string {
	s := ""
	for i, e := range eps {
		if i > 0 {
			s += ","
		}
		s += e.Addr
	}
	if s == "" {
		return "none"
	}
	return s
}

// interceptor adapts the bridge to the broker's interface, so neither
// package knows the other.
type interceptor struct{ b *bridge.Bridge }

func (i interceptor) Wants(topic string) bool { return i.b.Wants(topic) }

func (i interceptor) Accept(m broker.Message, done func(error)) {
	i.b.Accept(bridge.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, Origin: m.Origin, PacketID: m.PacketID, Dup: m.Dup}, done)
}

// Status is a snapshot for `edgegw status` and metrics.
type Status struct {
	Ready   bool
	Certs   []tlsx.CertInfo // upstream client certificate and CAs, with days left
	Broker  broker.Stats
	Bridge  *bridge.Stats
	Devices []DeviceStatus
}

// DeviceStatus is one device's state.
type DeviceStatus struct {
	Name, Type string
	Readings   uint64
	Failures   uint64
	Up         bool
	LastError  string
	Counters   devices.Stats
}

// Status returns the gateway's state.
func (g *Gateway) Status() Status {
	g.mu.Lock()
	bk, br, ready, certs := g.broker, g.bridge, g.ready, g.certs
	g.mu.Unlock()
	var s Status
	s.Ready, s.Certs = ready, certs
	if bk != nil {
		s.Broker = bk.Stats()
	}
	if br != nil {
		bs := br.Stats()
		s.Bridge = &bs
	}
	for _, d := range g.devices {
		s.Devices = append(s.Devices, d.status())
	}
	return s
}

// BrokerAddr is the local broker's plain listener address once running.
func (g *Gateway) BrokerAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.broker == nil || g.broker.Addr("tcp") == nil {
		return ""
	}
	return g.broker.Addr("tcp").String()
}
