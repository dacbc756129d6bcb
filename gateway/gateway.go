// Package gateway runs edgegw: Build makes every part from a checked
// configuration without I/O; Run starts them in named steps, each of which
// pushes its stop onto one list, and on the way out stops that list
// backwards. Each stop is bounded (3 s by default, the outbox 10 s): one that
// takes longer is abandoned with an error naming it, so a stop finishes in
// bounded time in every state (uplink down, a full buffer under
// full_policy = "block", a stalled upstream, a device driver that ignores
// its context, local clients connected) and stays under the unit's
// TimeoutStopSec.
//
// Start order (lifecycle: run.go):
//
//  1. data_dir: the directory and the per-device sequence numbers.
//  2. outbox: opened first, because the broker hands it messages as soon
//     as it listens.
//  3. deadletter: the store of messages the upstream refused for good
//     (the gateway runs without it if it cannot be opened).
//  4. bridge: the local broker and the bridge are made (no I/O) and the
//     bridge is hooked into the broker.
//  5. broker: the local broker listens (or connects to the external one).
//  6. ecosystem: availability, Home Assistant discovery, Sparkplug.
//  7. ops: systemd notify and watchdog, liveness probe, health and metrics.
//  8. uplink: the upstream session, the dead-letter request service and
//     the certificate watch.
//  9. devices: the drivers under their supervisors, and their commands.
//  10. outbox waits: nothing starts; see its stop.
//
// Stop order, the reverse:
//
//  1. outbox waits: every wait for outbox space ends, so a device or a local
//     publisher held back by a full buffer under "block" returns at once
//     (what it was publishing is refused and counted, not acknowledged).
//  2. devices: cancelled; every driver has returned (a gpio_out has driven
//     its safe state) before anything they publish into stops.
//  3. uplink: DISCONNECT within a second however stalled the link; what is
//     not acknowledged stays in the outbox.
//  4. ops: STOPPING=1 was sent when the stop began; the HTTP endpoint closes.
//  5. ecosystem: its subscriptions end.
//  6. broker: local clients are disconnected; nothing new comes in.
//  7. deadletter: closed once nothing (bridge, request service) uses it.
//  8. outbox: what is queued is written and fsynced, then the files close.
//  9. data_dir: the sequence numbers are saved and the data_dir lock is
//     released.
//
// A component added later is one line in (*running).steps, at the place its
// stop must come in the reverse order.
//
// Concurrency: Run owns every goroutine it starts, through its steps; each
// stop waits for its goroutines (or is abandoned at its budget, with an
// error naming it). A publish waiting for space under full_policy "block"
// is released by the first stop ("outbox waits").
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
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/edgegw/edgegw/boards"
	"github.com/edgegw/edgegw/bridge"
	"github.com/edgegw/edgegw/bridge/outbox"
	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/gateway/config"
	"github.com/edgegw/edgegw/internal/ratelog"
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

	// stopTrace, when set, sees each step's stop as it ends, and stopBudget
	// replaces the default stop budget (tests).
	stopTrace  func(step string, took time.Duration, err error)
	stopBudget time.Duration
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
