package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edgegw/edgegw/bench/load"
	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/netproxy"
)

// Kinds of bridge under test.
const (
	kEdgegw   = "edgegw"
	kMosq     = "mosquitto"         // max_queued_messages 0 (unlimited)
	kMosqDflt = "mosquitto-default" // max_queued_messages 1000 (its default)
	kDirect   = "direct"            // publisher straight into upstream

	// The flash-wear, CPU and slow-board tables.
	kEdgegwDflt = "edgegw-default"     // no [buffer] keys: what a new user gets
	kEdgegwDisk = "edgegw-disk"        // [buffer] durability = "disk"
	kMosqAuto   = "mosquitto-autosave" // kMosq + autosave_on_changes true, autosave_interval 1
)

// isEdgegw reports whether kind runs bin/edgegw (else mosquitto).
func isEdgegw(kind string) bool { return strings.HasPrefix(kind, kEdgegw) }

// errKeyUnknown: this edgegw does not know a config key the kind needs.
var errKeyUnknown = errors.New("key unknown")

// rigOpts tune one rig.
type rigOpts struct {
	// up and proxy, when set, are shared (fleet); the rig does not own them.
	up    *mosquittotest.Server
	proxy *netproxy.Proxy

	kind       string
	qos        byte // rule QoS
	replayRate int
	backoffMax string // edgegw backoff_max; "" = its default (2 s)
	// mosqRestart is Mosquitto's restart_timeout; "" = its default
	// (jittered backoff, 5 to 30 s).
	mosqRestart string
	id          string
	// wear puts the bridging process's data directory on its own
	// loop-mounted ext4 (rig.fs), whose block device counts its writes.
	wear bool
	// noProxy connects the bridging process straight to the upstream
	// Mosquitto, as a gateway meets a remote broker: no link cuts then.
	// The proxy runs in the bench's own process, beside the publisher, so
	// two writes a bridge makes at once, to the publisher and to the
	// proxy, wake one process once; that coalescing has no counterpart
	// when the upstream is another machine (the CPU table says so).
	noProxy bool
}

// rig is one upstream Mosquitto (mutual TLS), a proxy in front of it, and
// one bridging process (none for direct) with its local broker.
type rig struct {
	o       rigOpts
	dir     string
	pki     certs.Files
	up      *mosquittotest.Server
	proxy   *netproxy.Proxy
	local   string // where publishers connect
	cfg     string // bridging process config
	logPath string
	p       *proc
	fs      *loopFS // with rigOpts.wear
}

func clientFiles(f certs.Files, name string) *load.TLSFiles {
	p, _ := f.Client(name)
	return &load.TLSFiles{CA: f.CA.Cert, Cert: p.Cert, Key: p.Key}
}

// startUpstream starts the upstream Mosquitto and the proxy.
func startUpstream(dir string, pki certs.Files) (*mosquittotest.Server, *netproxy.Proxy, error) {
	fp := func() int { p, _ := freePort(); return p }
	// sys_interval 1: the fleet workload reads the upstream's own count of
	// PUBLISHes received, once a second.
	up, err := mosquittotest.StartE(dir, mosquittotest.Options{CAFile: pki.CA.Cert, CertFile: pki.Server.Cert, KeyFile: pki.Server.Key, Extra: "sys_interval 1\n"}, fp)
	if err != nil {
		return nil, nil, err
	}
	px, err := netproxy.New(up.Addr())
	if err != nil {
		up.Stop()
		return nil, nil, err
	}
	return up, px, nil
}

func newRig(root string, pki certs.Files, o rigOpts) (*rig, error) {
	dir, err := os.MkdirTemp(root, o.kind+"-")
	if err != nil {
		return nil, err
	}
	if o.qos == 0 {
		o.qos = 1
	}
	if o.id == "" {
		o.id = "gw"
	}
	r := &rig{o: o, dir: dir, pki: pki}
	if o.up != nil {
		r.up, r.proxy = o.up, o.proxy
	} else if r.up, r.proxy, err = startUpstream(dir, pki); err != nil {
		return nil, err
	}
	if o.kind == kDirect {
		r.local = r.up.Addr()
		return r, nil
	}
	port, err := freePort()
	if err != nil {
		r.close()
		return nil, err
	}
	r.local = "127.0.0.1:" + strconv.Itoa(port)
	r.logPath = filepath.Join(dir, o.kind+".log")
	if o.wear {
		if r.fs, err = mountLoopExt4(filepath.Join(dir, "data")); err != nil {
			r.close()
			return nil, err
		}
	} else if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		r.close()
		return nil, err
	}
	switch {
	case isEdgegw(o.kind):
		r.cfg = filepath.Join(dir, "gateway.toml")
		err = os.WriteFile(r.cfg, []byte(edgegwConfig(r, port)), 0o600)
		if err == nil && o.kind == kEdgegwDisk {
			err = checkConfig(r.cfg, "durability")
		}
	default:
		r.cfg = filepath.Join(dir, "mosquitto.conf")
		err = os.WriteFile(r.cfg, []byte(mosquittoConfig(r, port)), 0o600)
	}
	if err != nil {
		r.close()
		return nil, err
	}
	if err := r.start(); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// upstreamAddr is where the bridging process connects: the proxy, or
// with noProxy the upstream Mosquitto itself.
func (r *rig) upstreamAddr() string {
	if r.o.noProxy {
		return r.up.Addr()
	}
	return r.proxy.Addr()
}

func edgegwConfig(r *rig, port int) string {
	gw, _ := r.pki.Client("gw-01")
	return fmt.Sprintf(`[gateway]
id = %q
data_dir = %q
http_listen = ""

[broker]
listen = "127.0.0.1:%d"

[upstream]
address = "mqtts://127.0.0.1:%s"
client_id = "edgegw-%s"
replay_rate = %d
%s
[upstream.tls]
cafile = %q
certfile = %q
keyfile = %q
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = %d

[buffer]
%smax_bytes = "1GiB"
`, r.o.id, filepath.Join(r.dir, "data"), port, portOf(r.upstreamAddr()), r.o.id, r.o.replayRate, backoffLine(r.o.backoffMax),
		r.pki.CA.Cert, gw.Cert, gw.Key, r.o.qos, bufferLines(r.o.kind))
}

// bufferLines are the [buffer] keys of each edgegw kind besides max_bytes.
func bufferLines(kind string) string {
	switch kind {
	case kEdgegwDflt:
		return ""
	case kEdgegwDisk:
		return "durability = \"disk\"\n"
	}
	return "fsync = \"batch\"\n"
}

// checkConfig runs edgegw check-config on path; a complaint naming key
// is errKeyUnknown (an edgegw from before that key), anything else an
// error of the bench.
func checkConfig(path, key string) error {
	out, err := exec.Command(edgegwBin, "check-config", "-c", path).CombinedOutput()
	if err == nil {
		return nil
	}
	if strings.Contains(string(out), key) {
		return fmt.Errorf("%w: %s", errKeyUnknown, strings.TrimSpace(string(out)))
	}
	return fmt.Errorf("edgegw check-config %s: %w: %s", path, err, out)
}

func mosquittoConfig(r *rig, port int) string {
	gw, _ := r.pki.Client("gw-01")
	var b strings.Builder
	b.WriteString("per_listener_settings false\n")
	if os.Geteuid() == 0 {
		b.WriteString("user root\n")
	}
	fmt.Fprintf(&b, "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
	fmt.Fprintf(&b, "persistence true\npersistence_location %s/\n", filepath.Join(r.dir, "data"))
	if r.o.kind == kMosq || r.o.kind == kMosqAuto {
		b.WriteString("max_queued_messages 0\n")
	}
	if r.o.kind == kMosqAuto {
		// Its only setting that saves each change: the database is
		// written whenever the changes since the last save exceed
		// autosave_interval (a count here, not seconds).
		b.WriteString("autosave_on_changes true\nautosave_interval 1\n")
	}
	fmt.Fprintf(&b, "listener %d 127.0.0.1\nallow_anonymous true\n", port)
	fmt.Fprintf(&b, `connection bench-%s
address %s
bridge_protocol_version mqttv311
bridge_cafile %s
bridge_certfile %s
bridge_keyfile %s
bridge_tls_version tlsv1.2
cleansession false
clientid edge-mosq-%s
%s
topic readings/# out %d
`, r.o.id, r.upstreamAddr(), r.pki.CA.Cert, gw.Cert, gw.Key, r.o.id, mosqRestart(r.o.mosqRestart), r.o.qos)
	return b.String()
}

// mosqRestart is the bridge's reconnect backoff line: Mosquitto's default
// unless the workload or BENCH_MOSQ_RESTART (e.g. "1 2") sets one.
func mosqRestart(v string) string {
	if e := os.Getenv("BENCH_MOSQ_RESTART"); e != "" {
		v = e
	}
	if v == "" || v == "default" {
		return ""
	}
	return "restart_timeout " + v
}

func backoffLine(v string) string {
	l := ""
	if v != "" {
		l = fmt.Sprintf("backoff_max = %q\n", v)
	}
	if n := os.Getenv("BENCH_INFLIGHT"); n != "" {
		l += "inflight = " + n + "\n" // experiments: edgegw's upstream window
	}
	return l
}

// restore ends the cut and waits (bounded) until the bridge has connected
// again, so that the time a bridge spends in its reconnect backoff is not
// mistaken for a stall. It returns when the link came back and when the
// bridge reconnected (the latter zero if it did not within maxWait).
func (r *rig) restore(maxWait time.Duration) (restored, reconnected time.Time) {
	a := r.proxy.Accepted()
	restored = time.Now()
	r.proxy.Restore()
	for end := restored.Add(maxWait); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if r.proxy.Accepted() > a {
			return restored, time.Now()
		}
	}
	return restored, time.Time{}
}

// reconnectWait bounds restore: Mosquitto's default backoff reaches 30 s.
const reconnectWait = 40 * time.Second

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// start (re)starts the bridging process on the same config and data.
func (r *rig) start() error {
	var err error
	switch {
	case r.o.kind == kDirect:
	case isEdgegw(r.o.kind):
		r.p, err = startProc(r.o.kind, r.logPath, r.local, edgegwBin, "run", "-c", r.cfg)
	default:
		r.p, err = startProc(r.o.kind, r.logPath, r.local, "mosquitto", "-c", r.cfg)
	}
	return err
}

func (r *rig) close() {
	if r.p != nil {
		r.p.stop()
	}
	if r.fs != nil {
		r.fs.close()
	}
	if r.proxy != nil && r.o.proxy == nil {
		r.proxy.Close()
	}
	if r.up != nil && r.o.up == nil {
		r.up.Stop()
	}
	if !keepDirs {
		os.RemoveAll(r.dir)
	}
}

// pubConn is how a publisher reaches this rig's local broker.
func (r *rig) pubConn(id string) load.Conn {
	if r.o.kind == kDirect {
		return load.Conn{Addr: r.local, TLS: clientFiles(r.pki, "pub"), ClientID: id}
	}
	return load.Conn{Addr: r.local, ClientID: id}
}

// subscribe connects the upstream subscriber (directly, not via the proxy).
func (r *rig) subscribe(qos byte, sources, n int, latency bool) (*load.Subscriber, error) {
	return load.NewSubscriber(load.Conn{Addr: r.up.Addr(), TLS: clientFiles(r.pki, "sub"), ClientID: "sub-" + r.o.id + strconv.FormatInt(time.Now().UnixNano(), 36)}, "readings/#", qos, sources, n, latency)
}

// warm publishes to readings/warmup until the subscriber sees something
// (the bridge is connected end to end), then resets the subscriber.
func warm(ctx context.Context, pub *load.Publisher, sub *load.Subscriber, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	topic := pub.Topic
	pub.Topic = load.WarmupTopic
	defer func() { pub.Topic = topic }()
	for time.Now().Before(deadline) {
		if err := pub.Run(ctx, 0, 1, 0, nil); err != nil {
			return err
		}
		for end := time.Now().Add(250 * time.Millisecond); time.Now().Before(end); {
			if sub.Count().Warm > 0 {
				sub.Reset()
				return nil
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return errors.New("bridge not connected end to end: warm-up message never arrived upstream")
}
