package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a bridging process (edgegw or mosquitto) the bench started.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// startProc runs bin args with its output in logPath and waits until addr
// accepts TCP connections (bounded).
func startProc(name, logPath, addr string, bin string, args ...string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{}), log: lf}
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	if dir := os.Getenv("BENCH_PPROF"); dir != "" && isEdgegw(name) {
		// A CPU profile per edgegw process (cmd/edgegw's hidden EDGEGW_PPROF).
		p.cmd.Env = append(os.Environ(), "EDGEGW_PPROF="+filepath.Join(dir, fmt.Sprintf("edgegw-%d.pprof", time.Now().UnixNano())))
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	if err := waitPort(addr, 60*time.Second, p.done); err != nil {
		p.kill()
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%s: %w\n%s", name, err, tailLines(string(log), 20))
	}
	return p, nil
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// waitPort polls addr until it accepts, the process exits, or timeout.
func waitPort(addr string, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before listening on %s", addr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s", addr, timeout)
		}
	}
}

// stopWait bounds a graceful stop. Mosquitto 2.0.11 with a bridge
// sometimes ignores SIGTERM for many seconds (seen in this bench); its
// figures are taken before the stop, so it gets a shorter wait.
func (p *proc) stopWait() time.Duration {
	if isEdgegw(p.name) {
		return 15 * time.Second
	}
	return 3 * time.Second
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// kill is kill -9 and waits for the exit.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.log.Close()
}

// stop sends SIGTERM and waits (bounded), then kills.
func (p *proc) stop() {
	t0 := time.Now()
	defer func() {
		if d := time.Since(t0); d > time.Second {
			fmt.Fprintf(os.Stderr, "bench: %s took %s to stop after SIGTERM\n", p.name, d.Round(time.Millisecond))
		}
	}()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(p.stopWait()):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	p.log.Close()
}

// rss returns VmRSS and VmHWM of pid in bytes.
func rss(pid int) (cur, hwm int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			cur = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	return cur, hwm
}

// writeBytes is /proc/PID/io write_bytes: bytes the process caused to be
// sent to the storage layer.
func writeBytes(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// sampler records the peak VmRSS of a process every 50 ms.
type sampler struct {
	pid  int
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	peak int64
}

func sampleRSS(pid int) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if r, _ := rss(pid); r > 0 {
				s.mu.Lock()
				s.peak = max(s.peak, r)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// done stops sampling and returns the peak.
func (s *sampler) done() int64 {
	close(s.stop)
	s.wg.Wait()
	if r, _ := rss(s.pid); r > s.peak {
		s.peak = r
	}
	return s.peak
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// cpuSeconds is the user+system CPU time of pid (/proc/PID/stat, 100 Hz
// clock ticks as on every Linux the bench targets).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100
}

// runSeconds is the time pid's threads have run (the first field of
// /proc/PID/task/TID/schedstat, nanoseconds), summed: the same total as
// utime+stime but not cut to 10 ms ticks, so a few hundred milliseconds of
// CPU measure to the microsecond. A thread that has exited is no longer
// counted (Go keeps its threads; Mosquitto has one); 0 when pid is gone.
func runSeconds(pid int) float64 {
	ds, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	var ns float64
	for _, d := range ds {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			v, _ := strconv.ParseFloat(f[0], 64)
			ns += v
		}
	}
	return ns / 1e9
}

// spinning reports whether pid burns most of a core for a second while
// (the caller knows) nothing flows: a hung event loop.
func spinning(pid int) bool {
	c0 := cpuSeconds(pid)
	time.Sleep(time.Second)
	return cpuSeconds(pid)-c0 > 0.8
}
