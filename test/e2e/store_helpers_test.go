package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/internal/certs"
	"github.com/edgegw/edgegw/internal/syncbuf"
)

// Helpers of the store-and-forward tests: numbered messages on a
// few topics, a persistent upstream subscriber, an analysis that names what
// was lost, duplicated or reordered, and the real binary run and killed.

// storeTopics are the local topics the store-and-forward tests publish on.
var storeTopics = []string{"readings/a", "readings/b", "readings/c"}

// remotePrefix is the bridge rule's remote_prefix in storeConfig.
const remotePrefix = "sites/s1/gw-01/"

// storeConfig is a gateway configuration for the store-and-forward tests:
// the embedded broker on brokerListen, upstream through upstreamAddr with
// mutual TLS, a short keepalive so a stalled link is noticed, a small
// backoff, one out rule at qos for readings/#, and extra appended ([buffer]).
func storeConfig(t testing.TB, f certs.Files, dataDir, brokerListen, upstreamAddr string, qos int, extra string) string {
	gw := clientPair(t, f, "gw-01")
	return fmt.Sprintf(`
[gateway]
id = "gw-01"
data_dir = %q
http_listen = ""

[broker]
listen = %q

[upstream]
address = "mqtts://%s"
keepalive = "1s"
backoff_min = "10ms"
backoff_max = "100ms"

[upstream.tls]
cafile = %q
certfile = %q
keyfile = %q

[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = %d
remote_prefix = %q

%s
`, dataDir, brokerListen, upstreamAddr, f.CA.Cert, gw.Cert, gw.Key, qos, remotePrefix, extra)
}

// payloadOf is the payload of message seq on a local topic: "a 17".
func payloadOf(topic string, seq uint64) string {
	return topic[strings.LastIndexByte(topic, '/')+1:] + " " + strconv.FormatUint(seq, 10)
}

// parsePayload reads "a 17" back; padding after another space is ignored.
func parsePayload(p []byte) (name string, seq uint64, err error) {
	name, rest, ok := strings.Cut(string(p), " ")
	if !ok {
		return "", 0, fmt.Errorf("payload %q is not \"<topic> <seq>\"", p)
	}
	num, _, _ := strings.Cut(rest, " ")
	seq, err = strconv.ParseUint(num, 10, 64)
	return name, seq, err
}

// seqSub is a persistent-session subscriber on the upstream broker, directly
// (not through the test proxy), that records per local topic the sequence
// numbers in arrival order.
type seqSub struct {
	c    paho.Client
	mu   sync.Mutex
	got  map[string][]uint64 // local topic -> seqs in arrival order
	bad  []string
	mark map[string]bool
	ch   chan struct{}
}

// subscribeSeqs subscribes remotePrefix+"readings/#" at qos with a
// persistent session (clean session off, a fixed client id) before the run.
func subscribeSeqs(t testing.TB, f certs.Files, addr string, qos byte) *seqSub {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(f.CA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	p := clientPair(t, f, "sub")
	cert, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	s := &seqSub{got: map[string][]uint64{}, mark: map[string]bool{}, ch: make(chan struct{}, 1)}
	opts := paho.NewClientOptions().AddBroker("ssl://" + addr).SetClientID("sub-" + strings.ReplaceAll(t.Name(), "/", "-")).
		SetTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"}).
		SetCleanSession(false).SetAutoReconnect(true).SetOrderMatters(true).SetMaxReconnectInterval(time.Second)
	s.c = paho.NewClient(opts)
	if tok := s.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	if tok := s.c.Subscribe(remotePrefix+"#", qos, s.handle); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { s.c.Disconnect(100) })
	return s
}

func (s *seqSub) handle(_ paho.Client, m paho.Message) { s.record(m.Topic(), m.Payload()) }

// record notes one message that arrived.
func (s *seqSub) record(topic string, payload []byte) {
	s.mu.Lock()
	if local, ok := strings.CutPrefix(topic, remotePrefix); ok && strings.HasPrefix(local, "marker/") {
		s.mark[local] = true
	} else if name, seq, err := parsePayload(payload); err != nil || !ok || "readings/"+name != local {
		s.bad = append(s.bad, fmt.Sprintf("%s %q", topic, payload))
	} else {
		s.got[local] = append(s.got[local], seq)
	}
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

// snapshot copies what arrived so far.
func (s *seqSub) snapshot() map[string][]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]uint64, len(s.got))
	for k, v := range s.got {
		out[k] = slices.Clone(v)
	}
	return out
}

// waitFor waits until cond holds for what arrived, or timeout; it reports
// whether cond held.
func (s *seqSub) waitFor(timeout time.Duration, cond func(map[string][]uint64) bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if cond(s.snapshot()) {
			return true
		}
		select {
		case <-s.ch:
		case <-time.After(200 * time.Millisecond):
		case <-deadline.C:
			return cond(s.snapshot())
		}
	}
}

// barrier publishes a marker straight to the upstream broker from the
// subscriber's own connection and waits for it to come back: whatever the
// broker had taken before (from the gateway, now stopped) has been delivered
// to the subscriber by then.
func (s *seqSub) barrier(t testing.TB, qos byte) {
	t.Helper()
	name := fmt.Sprintf("marker/%d", time.Now().UnixNano())
	if tok := s.c.Publish(remotePrefix+name, qos, false, "marker"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("marker publish: %v", tok.Error())
	}
	if !s.waitFor(10*time.Second, func(map[string][]uint64) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.mark[name]
	}) {
		t.Fatal("the marker did not come back within 10s")
	}
}

// acceptance is what a run must show per topic.
type acceptance struct {
	// want are the numbers that must arrive (nil: none required).
	want map[string][]uint64
	// exactlyOnce forbids duplicates.
	exactlyOnce bool
	// consecutive requires the first appearances to be exactly 1..n in
	// order (no gap at all); otherwise they must only increase.
	consecutive bool
}

// checkSeqs checks what a subscriber received. The order rule, per topic:
// take the numbers in arrival order and keep only the first appearance of
// each; that list must be strictly increasing (a re-delivery may repeat an
// earlier number, but a number must never first appear after a larger one).
// Every failure names the topic and the first few numbers concerned.
func checkSeqs(t testing.TB, got map[string][]uint64, bad []string, a acceptance) {
	t.Helper()
	if len(bad) > 0 {
		t.Errorf("%d messages with an unexpected topic or payload, first: %v", len(bad), first(bad, 5))
	}
	topics := map[string]bool{}
	for k := range got {
		topics[k] = true
	}
	for k := range a.want {
		topics[k] = true
	}
	names := make([]string, 0, len(topics))
	for k := range topics {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, topic := range names {
		seqs := got[topic]
		seen := make(map[uint64]int, len(seqs))
		var firsts []uint64
		var reorders []string
		var dups []uint64
		for i, n := range seqs {
			seen[n]++
			if seen[n] == 2 {
				dups = append(dups, n)
			}
			if seen[n] > 1 {
				continue
			}
			if len(firsts) > 0 && n < firsts[len(firsts)-1] && len(reorders) < 5 {
				reorders = append(reorders, fmt.Sprintf("%d first arrived after %d (arrival #%d)", n, firsts[len(firsts)-1], i))
			}
			firsts = append(firsts, n)
		}
		if len(reorders) > 0 {
			t.Errorf("%s: out of order: %s", topic, strings.Join(reorders, "; "))
		}
		if a.consecutive {
			for i, n := range firsts {
				if n != uint64(i+1) {
					t.Errorf("%s: first appearances are not 1..n: position %d holds %d, want %d (around: %v)", topic, i, n, i+1, firsts[max(0, i-3):min(len(firsts), i+4)])
					break
				}
			}
		}
		var missing []uint64
		for _, n := range a.want[topic] {
			if seen[n] == 0 {
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 {
			t.Errorf("%s: LOST %d of %d required messages, first: %v", topic, len(missing), len(a.want[topic]), first(missing, 10))
		}
		if a.exactlyOnce && len(dups) > 0 {
			t.Errorf("%s: DUPLICATED %d messages, first: %v", topic, len(dups), first(dups, 10))
		}
		t.Logf("%s: %d messages arrived, %d distinct, %d duplicated", topic, len(seqs), len(seen), len(dups))
	}
}

func first[T any](s []T, n int) []T { return s[:min(n, len(s))] }

// haveAll reports whether got holds every number of want.
func haveAll(got, want map[string][]uint64) bool {
	for topic, ns := range want {
		seen := make(map[uint64]bool, len(got[topic]))
		for _, n := range got[topic] {
			seen[n] = true
		}
		for _, n := range ns {
			if !seen[n] {
				return false
			}
		}
	}
	return true
}

// localClient makes a paho client for the gateway's local broker.
func localClient(addr, id string, clean bool, store paho.Store) paho.Client {
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectTimeout(2 * time.Second).SetWriteTimeout(500 * time.Millisecond).
		SetKeepAlive(30 * time.Second).SetOrderMatters(true)
	if store != nil {
		opts.SetStore(store)
	}
	return paho.NewClient(opts)
}

// gwProc runs the real edgegw binary with one config and data_dir across
// restarts, so it can be killed with SIGKILL and started again.
type gwProc struct {
	t          testing.TB
	bin, cfg   string
	brokerAddr string
	logs       *syncbuf.Buffer
	cmd        *exec.Cmd
	done       chan struct{}
	starts     int
	// command, if set, makes the command line of each start (a wrapper
	// around bin and its arguments, e.g. to run it in its own namespace).
	command func(bin string, args ...string) *exec.Cmd
}

func newGwProc(t testing.TB, cfgText, brokerAddr string) *gwProc {
	t.Helper()
	bin := buildBinary(t)
	path := filepath.Join(t.TempDir(), "gateway.toml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &gwProc{t: t, bin: bin, cfg: path, brokerAddr: brokerAddr, logs: &syncbuf.Buffer{}}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			log := p.logs.String()
			t.Logf("gateway log of %d runs kept in %s", p.starts, keepLog(t, "gateway.log", log))
			t.Logf("gateway log, warnings and errors of every run:\n%s", notable(log, 300))
			t.Logf("gateway log, last lines:\n%s", tail(log, 80))
		}
	})
	return p
}

// start runs the binary and waits until its local broker accepts
// connections.
func (p *gwProc) start() {
	p.t.Helper()
	p.starts++
	fmt.Fprintf(p.logs, "---- start %d\n", p.starts)
	cmd := exec.Command(p.bin, "run", "-c", p.cfg)
	if p.command != nil {
		cmd = p.command(p.bin, "run", "-c", p.cfg)
	}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start edgegw: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	deadline := time.Now().Add(15 * time.Second)
	for {
		// A listening socket, not a connection: a probe connection would
		// count against max_connections until the gateway accepted it and
		// saw it close, after this returned (a test of the limit lost one).
		if listening(p.brokerAddr) {
			return
		}
		select {
		case <-done:
			p.t.Fatalf("edgegw exited at start %d: %v\n%s", p.starts, cmd.ProcessState, tail(p.logs.String(), 40))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("edgegw start %d: local broker %s not listening within 15s\n%s", p.starts, p.brokerAddr, tail(p.logs.String(), 40))
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *gwProc) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// stop ends the gateway gracefully (SIGTERM), killing it after 15s.
func (p *gwProc) stop() {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if !p.cmd.ProcessState.Success() {
			p.t.Errorf("edgegw exited with %v after SIGTERM", p.cmd.ProcessState)
		}
	case <-time.After(15 * time.Second):
		p.t.Errorf("edgegw did not stop within 15s of SIGTERM")
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
}

// sleepCtx waits d or until ctx ends. It paces the fault injection at random
// moments; it is never used to wait for an event.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// publishPaced publishes total messages round robin over storeTopics (seq
// 1, 2, … per topic) at about rate per second with a window of 500 tokens,
// recording each in want, and fails on the first one not acknowledged.
func publishPaced(ctx context.Context, c paho.Client, total int, rate float64, qos byte, want map[string][]uint64) error {
	type sent struct {
		tok   paho.Token
		topic string
		seq   uint64
	}
	window := make(chan sent, 500)
	errc := make(chan error, 1)
	go func() {
		var err error
		for s := range window {
			if err != nil {
				continue
			}
			if !s.tok.WaitTimeout(60 * time.Second) {
				err = fmt.Errorf("local publisher: no acknowledgement within 60s for %s %d", s.topic, s.seq)
			} else if s.tok.Error() != nil {
				err = fmt.Errorf("local publisher: %s %d: %w", s.topic, s.seq, s.tok.Error())
			}
		}
		errc <- err
	}()
	start := time.Now()
	for i := 0; i < total && ctx.Err() == nil; i++ {
		topic := storeTopics[i%len(storeTopics)]
		seq := uint64(i/len(storeTopics) + 1)
		if ahead := time.Duration(float64(i)/rate*float64(time.Second)) - time.Since(start); ahead > 5*time.Millisecond {
			sleepCtx(ctx, ahead)
		}
		want[topic] = append(want[topic], seq)
		window <- sent{c.Publish(topic, qos, false, payloadOf(topic, seq)), topic, seq}
	}
	close(window)
	return <-errc
}

// listening reports whether a socket listens on addr's port (TCP, IPv4 or
// IPv6), from /proc/net/tcp{,6}; it makes no connection.
func listening(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return false
	}
	want := fmt.Sprintf(":%04X", n)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) > 3 && strings.HasSuffix(fs[1], want) && fs[3] == "0A" { // 0A: LISTEN
				return true
			}
		}
	}
	return false
}
