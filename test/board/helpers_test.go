// Package board holds the tests of life on the board: the .deb packages
// (lintian, contents, the unit, an install into a scratch root), the ARM
// builds run under qemu-user, systemd notify from the real binary, and the
// metrics endpoint against a real Mosquitto.
//
// The binaries are built once per test run into a temporary directory (the
// Go build cache makes that quick when nothing changed) and shared by every
// test here.
package board

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/syncbuf"
	"github.com/edgegw/edgegw/internal/testenv"
)

// testVersion is stamped into the test binaries; the packages carry it too.
const testVersion = "0.0.0+boardtest"

// targets are the builds the tests need, by bin/ suffix.
var targets = map[string][]string{
	"armv6": {"GOARCH=arm", "GOARM=6"},
	"armv7": {"GOARCH=arm", "GOARM=7"},
	"arm64": {"GOARCH=arm64"},
	"amd64": {"GOARCH=amd64"},
}

var (
	buildDir  string
	buildOnce = map[string]*sync.Once{}
	buildErr  = map[string]error{}
	buildMu   sync.Mutex
	repoRoot  string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgegw-board-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	wd, _ := os.Getwd()
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	for k := range targets {
		buildOnce[k] = new(sync.Once)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binary returns the path of the edgegw build for target (armv6, armv7,
// arm64, amd64), building it on first use.
func binary(t testing.TB, target string) string {
	t.Helper()
	env, ok := targets[target]
	if !ok {
		t.Fatalf("unknown target %q", target)
	}
	out := filepath.Join(buildDir, "edgegw-linux-"+target)
	buildMu.Lock()
	once := buildOnce[target]
	buildMu.Unlock()
	once.Do(func() {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+testVersion, "-o", out, "./cmd/edgegw")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), append([]string{"CGO_ENABLED=0", "GOOS=linux"}, env...)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			buildMu.Lock()
			buildErr[target] = fmt.Errorf("go build %s: %v\n%s", target, err, b)
			buildMu.Unlock()
		}
	})
	buildMu.Lock()
	err := buildErr[target]
	buildMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// need makes sure the tools are installed (skipped under -short; in CI or as
// root a missing one is a failure that says how to install it).
func need(t testing.TB, tools ...string) {
	t.Helper()
	testenv.Tools(t, "qemu-user-static, lintian, systemd, dpkg", tools...)
}

// runCmd runs a command with a deadline and returns its combined output.
func runCmd(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.String(), fmt.Errorf("%s %s: timed out after %s", name, strings.Join(args, " "), timeout)
	}
	return out.String(), err
}

func mustRun(t testing.TB, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	out, err := runCmd(t, timeout, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	// Below the kernel's ephemeral range: a port from 127.0.0.1:0 could be
	// handed to some outgoing connection's local end before the gateway
	// binds it (CI: "bind: address already in use" for http_listen).
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(mosquittotest.FreePort(t)))
}

// pki makes a CA, a server certificate for 127.0.0.1 and client
// certificates for the gateway and a test subscriber.
func pki(t testing.TB) certs.Files {
	t.Helper()
	f, err := certs.Init(certs.Options{Dir: filepath.Join(t.TempDir(), "pki"), ServerNames: []string{"localhost", "127.0.0.1"}, ClientNames: []string{"gw-01", "sub"}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func upstream(t testing.TB, f certs.Files, port int) *mosquittotest.Server {
	t.Helper()
	return mosquittotest.Start(t, mosquittotest.Options{CAFile: f.CA.Cert, CertFile: f.Server.Cert, KeyFile: f.Server.Key, Port: port})
}

// gatewayConfig is a config for the gateway under test: one sim device,
// an upstream over mutual TLS, the embedded broker and HTTP on loopback.
func gatewayConfig(f certs.Files, dataDir, upstreamAddr, brokerAddr, httpAddr, extra string) string {
	c, _ := f.Client("gw-01")
	return fmt.Sprintf(`[gateway]
id = "gw-01"
data_dir = %q
http_listen = %q

[broker]
listen = %q

[upstream]
address = "mqtts://%s"
backoff_min = "100ms"
backoff_max = "500ms"
keepalive = "5s"
[upstream.tls]
cafile = %q
certfile = %q
keyfile = %q
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = 1
remote_prefix = "site/"
[[upstream.topic]]
pattern = "q0/#"
direction = "out"
qos = 0
remote_prefix = "site/"
%s
[[device]]
name = "sim1"
type = "sim"
interval = "100ms"
`, dataDir, httpAddr, brokerAddr, upstreamAddr, f.CA.Cert, c.Cert, c.Key, extra)
}

// received collects what an upstream subscriber got.
type received struct {
	mu   sync.Mutex
	msgs []paho.Message
}

func (r *received) add(m paho.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *received) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *received) snapshot() []paho.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]paho.Message(nil), r.msgs...)
}

// subscribe subscribes filter on the upstream Mosquitto with the "sub"
// client certificate.
func subscribe(t testing.TB, f certs.Files, addr, filter string) *received {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(f.CA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	p, _ := f.Client("sub")
	cert, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	r := &received{}
	opts := paho.NewClientOptions().AddBroker("ssl://" + addr).SetClientID(fmt.Sprintf("sub-%d", time.Now().UnixNano())).
		SetTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"}).
		SetAutoReconnect(true).SetCleanSession(true).SetConnectRetry(true)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	if tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { r.add(m) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return r
}

// waitUntil polls a state (not an event source) with a deadline.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// process is a running edgegw (native or under qemu).
type process struct {
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan error
}

// start runs argv with extra environment until the test ends.
func start(t testing.TB, env []string, argv ...string) *process {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	p := &process{cmd: cmd, out: &syncbuf.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(argv[0]), p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits (bounded) for the exit status.
func (p *process) stop(t testing.TB) error {
	if p.cmd.ProcessState != nil {
		return nil
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Errorf("edgegw did not stop within 20s of SIGINT")
		return <-p.done
	}
}

// rssKiB reads VmRSS of a process.
func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var n int
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:")), "%d", &n)
			return n
		}
	}
	return -1
}
