package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"

	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/gateway/config"
)

// ops is what the gateway does for the people and programs that run it:
// systemd notify and watchdog, liveness of the main loops, the health and
// metrics HTTP endpoint, the reading clock and SIGHUP reloads.
type ops struct {
	set   opsSettings
	live  *liveness
	clock *stampClock

	bridgeHeart *heart
	brokerHeart *heart

	notifier   *Notifier
	loadedText string // the file as the gateway started from it, for reloads
	httpLn     net.Listener
	started    time.Time

	certs certCache // certificate expiry for metrics
}

// opsSettings are the periods and limits of the ops loops. Tests shorten
// them; the defaults suit a Pi.
type opsSettings struct {
	statusEvery time.Duration // STATUS= period
	probeEvery  time.Duration // broker probe period
	deviceMax   time.Duration // longest a device may spend publishing one reading
	// getenv reads NOTIFY_SOCKET and WATCHDOG_USEC (os.Getenv when nil).
	getenv func(string) string
	// signals receives SIGHUP (signal.Notify when nil).
	hup chan os.Signal
}

func defaultOpsSettings() opsSettings {
	return opsSettings{statusEvery: 10 * time.Second, probeEvery: 5 * time.Second, deviceMax: 60 * time.Second}
}

// liveTopic is published by the broker probe; a $ topic matches no bridge
// rule and no client's "#" subscription.
const liveTopic = "$edgegw/liveness"

// initOps makes the hearts before anything starts, so the bridge dialer and
// the device supervisors can carry theirs.
func (g *Gateway) initOps() {
	o := &g.ops
	if o.set.statusEvery == 0 {
		o.set = defaultOpsSettings()
	}
	o.started = time.Now()
	if src, err := os.ReadFile(g.cfg.File()); err == nil {
		o.loadedText = string(src)
	}
	o.live = newLiveness(nil)
	if o.clock == nil {
		var src clockSource = systemClock{}
		if g.cfg.Gateway.Clock == "trusted" {
			src = trustedClock{}
		}
		o.clock = newStampClock(src, g.log.With("component", "clock"))
	}
	cfg := g.cfg
	if u := cfg.Upstream; u != nil {
		// Up: a PINGRESP at least every keepalive. Down: a dial at least
		// every backoff_max plus the connect timeout (upstream.connect_timeout,
		// 10s by default, not a constant of its own here).
		limit := max(u.Keepalive.Duration, u.BackoffMax.Duration) + u.ConnectTimeout.Duration + 20*time.Second
		o.bridgeHeart = o.live.beating("bridge", limit)
	}
	// The probe goes through the local broker: the embedded one, or our
	// client of an external one. While an external broker is unreachable,
	// each reconnection attempt of that client beats instead
	// (localbroker.go): an absent Mosquitto is not a wedged gateway.
	o.brokerHeart = o.live.beating("broker", 3*o.set.probeEvery)
	block := cfg.Buffer.FullPolicy == "block"
	for _, d := range g.devices {
		d.heart = o.live.busyHeart("device "+d.name, o.set.deviceMax)
		d.clock = o.clock
		if block {
			// Under full_policy "block" a reading waits for buffer space by
			// design; that is not a wedge.
			d.heart.excused = g.outboxBlocking
		}
	}
}

func (g *Gateway) outboxBlocking() bool {
	g.mu.Lock()
	br := g.bridge
	g.mu.Unlock()
	return br != nil && br.Stats().Outbox.Full
}

// startOps starts the ops loops once the broker is up. stop ends them and
// waits.
func (g *Gateway) startOps(ctx context.Context, bk localBroker) (stop func(), err error) {
	o := &g.ops
	log := g.log.With("component", "ops")
	n, err := NewNotifier(o.set.getenv)
	if err != nil {
		log.Warn("systemd notify is off", "error", err)
	}
	o.notifier = n
	var srv *http.Server
	if addr := g.cfg.Gateway.HTTPListen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("gateway: cannot listen on %s for health and metrics: %w (set [gateway] http_listen to a free port, or \"\" to turn it off)", addr, err)
		}
		o.httpLn = ln
		warnHTTPListen(log, addr)
		srv = &http.Server{Handler: g.httpHandler(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	}
	cancelProbe := func() {}
	if o.brokerHeart != nil {
		cancelProbe, err = bk.Subscribe(liveTopic, func(broker.Message) { o.brokerHeart.Beat() })
		if err != nil {
			n.Close()
			if o.httpLn != nil {
				o.httpLn.Close()
			}
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}

	octx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	goLoop := func(f func(context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(octx)
		}()
	}
	if srv != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(o.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("health and metrics endpoint stopped", "error", err)
			}
		}()
		log.Info("health and metrics on http://"+o.httpLn.Addr().String(), "paths", "/healthz /readyz /metrics")
	}
	if o.brokerHeart != nil {
		goLoop(func(ctx context.Context) { g.probeLoop(ctx, bk) })
	}
	goLoop(func(ctx context.Context) { g.notifyLoop(ctx, log) })
	goLoop(func(ctx context.Context) { g.hupLoop(ctx, log) })
	return func() {
		cancel()
		if srv != nil {
			sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
			_ = srv.Shutdown(sctx)
			c()
		}
		wg.Wait()
		cancelProbe()
		_ = n.Close()
	}, nil
}

// HTTPAddr is the health and metrics listener's address once running, or "".
func (g *Gateway) HTTPAddr() string {
	if g.ops.httpLn == nil {
		return ""
	}
	return g.ops.httpLn.Addr().String()
}

// probeLoop sends a message through the broker every probeEvery; its
// subscriber beats the broker's heart.
func (g *Gateway) probeLoop(ctx context.Context, bk localBroker) {
	t := time.NewTicker(g.ops.set.probeEvery)
	defer t.Stop()
	for {
		_ = bk.Publish(broker.Message{Topic: liveTopic, Payload: []byte("1")})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ready tells systemd the gateway is up.
func (g *Gateway) notifyReady() {
	if err := g.ops.notifier.Send("READY=1\nSTATUS=" + statusLine(g.Status())); err != nil {
		g.log.Warn("cannot tell systemd the gateway is ready", "error", err)
	}
}

// notifyLoop sends STATUS= lines and, while every main loop is alive,
// WATCHDOG=1; on the way out it sends STOPPING=1.
func (g *Gateway) notifyLoop(ctx context.Context, log *slog.Logger) {
	o := &g.ops
	n := o.notifier
	if n == nil {
		<-ctx.Done()
		return
	}
	status := time.NewTicker(o.set.statusEvery)
	defer status.Stop()
	var wd <-chan time.Time
	if n.Watchdog > 0 {
		t := time.NewTicker(n.Watchdog)
		defer t.Stop()
		wd = t.C
		log.Info("systemd watchdog on", "ping_every", n.Watchdog)
	}
	var wedged []string
	for {
		select {
		case <-ctx.Done():
			_ = n.Send("STOPPING=1\nSTATUS=stopping")
			return
		case <-status.C:
			_ = n.Send("STATUS=" + statusLine(g.Status()))
		case <-wd:
			stale := o.live.stale()
			if len(stale) == 0 {
				if wedged != nil {
					log.Info("every main loop is alive again; watchdog pings resume")
					wedged = nil
				}
				_ = n.Send("WATCHDOG=1")
				continue
			}
			if !reflect.DeepEqual(stale, wedged) {
				log.Error("main loop not responding; watchdog pings stopped, systemd will restart the gateway if it does not recover", "loops", strings.Join(stale, ", "))
				wedged = stale
			}
		}
	}
}

// hupLoop reloads on SIGHUP what can be changed safely while running.
func (g *Gateway) hupLoop(ctx context.Context, log *slog.Logger) {
	ch := g.ops.set.hup
	if ch == nil {
		ch = make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGHUP)
		defer signal.Stop(ch)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			g.reload(log)
		}
	}
}

// reload re-reads the configuration file. The log level changes at once;
// anything else that changed is named with "restart needed".
func (g *Gateway) reload(log *slog.Logger) {
	path := g.cfg.File()
	_ = g.ops.notifier.Send("RELOADING=1\nMONOTONIC_USEC=" + monotonicUsec())
	defer func() { _ = g.ops.notifier.Send("READY=1") }()
	next, err := config.Load(path)
	if err != nil {
		log.Error("reload: the configuration has problems; keeping the running one (edgegw check-config -c "+path+")", "error", err)
		return
	}
	applied := []string{}
	if next.Gateway.LogLevel != g.cfg.Gateway.LogLevel {
		if g.LogLevel != nil {
			var lv slog.Level
			_ = lv.UnmarshalText([]byte(next.Gateway.LogLevel))
			g.LogLevel.Set(lv)
			applied = append(applied, "gateway.log_level="+next.Gateway.LogLevel)
			g.cfg.Gateway.LogLevel = next.Gateway.LogLevel
		}
	}
	restart, err := changedSections(path, g.ops.loadedText)
	if err != nil {
		log.Warn("reload: cannot compare the file with the running configuration", "error", err)
	}
	log.Info("reloaded", "applied", strings.Join(applied, " "), "needs_restart", strings.Join(restart, " "))
	if len(restart) > 0 {
		log.Warn("reload: these changes take effect only after a restart (systemctl restart edgegw)", "changed", strings.Join(restart, ", "))
	}
}

// changedSections compares the file now with the text the gateway started
// from, table by table, and returns the changed keys other than log_level.
func changedSections(path, started string) ([]string, error) {
	if started == "" {
		return nil, errors.New("the starting text is unknown")
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var a, b map[string]any
	if _, err := toml.Decode(started, &a); err != nil {
		return nil, err
	}
	if _, err := toml.Decode(string(src), &b); err != nil {
		return nil, err
	}
	var out []string
	ga, _ := a["gateway"].(map[string]any)
	gb, _ := b["gateway"].(map[string]any)
	for _, k := range unionKeys(ga, gb) {
		if k != "log_level" && !reflect.DeepEqual(ga[k], gb[k]) {
			out = append(out, "gateway."+k)
		}
	}
	for _, k := range unionKeys(a, b) {
		if k == "gateway" || reflect.DeepEqual(a[k], b[k]) {
			continue
		}
		if k == "device" {
			out = append(out, "device list (adding, removing or changing devices)")
			continue
		}
		out = append(out, k)
	}
	return out, nil
}

func unionKeys(a, b map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]any{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as systemd wants it
// next to RELOADING=1.
func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "0"
	}
	return strconv.FormatInt(ts.Nano()/1000, 10)
}
