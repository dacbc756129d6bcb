// Package mosquittotest starts a real Mosquitto broker for tests, benchmarks
// and the demo: on a free loopback port, optionally with a mutual-TLS
// listener (require_certificate, use_identity_as_username), and stops it when
// the test ends. It waits for the broker by polling its port, never by
// sleeping a fixed time.
//
// Concurrency: Start blocks until the port answers or 10 s have passed;
// Stop may be called from any goroutine, any number of times, and returns
// within 5 s of SIGTERM (then SIGKILL). Log may be read while mosquitto is
// still writing (syncbuf).
package mosquittotest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/syncbuf"
	"github.com/edgegw/edgegw/internal/testenv"
)

// Options describe the broker.
type Options struct {
	// CAFile, CertFile and KeyFile turn on TLS; with them the listener
	// requires a client certificate and takes its CN as the user name.
	CAFile, CertFile, KeyFile string
	// TLSVersion is mosquitto's tls_version (default tlsv1.2, a minimum).
	TLSVersion string
	// Port is the port to listen on (0 = a free one).
	Port int
	// Extra is appended to mosquitto.conf.
	Extra string
	// Persistence turns on mosquitto's persistence (in the test's dir).
	Persistence bool
}

// Server is a running mosquitto.
type Server struct {
	Port int
	Dir  string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	once sync.Once
	done chan struct{}
}

// Addr is 127.0.0.1:Port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Pid is the mosquitto process id (the bench pins it to a core).
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Available reports whether mosquitto is installed; tests call Require.
func Available() bool {
	_, err := exec.LookPath("mosquitto")
	return err == nil
}

// Require makes sure mosquitto is installed: under -short the test is
// skipped (the unit tier needs no Mosquitto); in CI or as root a missing
// mosquitto is a failure naming the fix (make test checks for it first).
func Require(t testing.TB) {
	t.Helper()
	testenv.Tools(t, "mosquitto mosquitto-clients", "mosquitto")
}

// FreePort returns a port that was free a moment ago, chosen below the
// kernel's ephemeral range (ip_local_port_range): the kernel never gives
// such a port to an outgoing connection or to a listener on port 0, so a
// test that frees its port for a moment (a gateway killed and started
// again on the same address) cannot lose it to another connection on the
// machine, only — far less likely — to another test's FreePort.
func FreePort(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	for range 100 {
		port := 10000 + rand.IntN(low-10000)
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			l.Close()
			return port
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read, Linux's default).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low <= 11000 {
		return 32768
	}
	return low
}

// Start runs mosquitto until the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	Require(t)
	s, err := StartE(t.TempDir(), o, func() int { return FreePort(t) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", s.Log())
		}
	})
	return s
}

// StartE runs mosquitto in dir; the caller stops it. freePort is used when
// o.Port is 0; a port freePort chose can be taken by another process
// before mosquitto binds it (tests of other packages run at the same time),
// so then mosquitto is started again on another one, a few times.
func StartE(dir string, o Options, freePort func() int) (*Server, error) {
	if o.Port != 0 {
		return startOnce(dir, o, o.Port)
	}
	var err error
	for range 5 {
		var s *Server
		if s, err = startOnce(dir, o, freePort()); !errors.Is(err, errPortTaken) {
			return s, err
		}
	}
	return nil, err
}

// errPortTaken: mosquitto could not bind its port.
var errPortTaken = errors.New("port taken")

func startOnce(dir string, o Options, port int) (*Server, error) {
	var conf bytes.Buffer
	fmt.Fprintf(&conf, "per_listener_settings false\n")
	if os.Geteuid() == 0 {
		// As root mosquitto drops to the mosquitto user, which cannot read
		// files in a 0700 temp dir.
		conf.WriteString("user root\n")
	}
	fmt.Fprintf(&conf, "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nconnection_messages true\n")
	fmt.Fprintf(&conf, "max_queued_messages 0\nmax_inflight_messages 0\n")
	if o.Persistence {
		fmt.Fprintf(&conf, "persistence true\npersistence_location %s/\n", dir)
	} else {
		conf.WriteString("persistence false\n")
	}
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", port)
	if o.CertFile != "" {
		v := o.TLSVersion
		if v == "" {
			v = "tlsv1.2"
		}
		fmt.Fprintf(&conf, "cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\nuse_identity_as_username true\ntls_version %s\nallow_anonymous false\n",
			o.CAFile, o.CertFile, o.KeyFile, v)
	} else {
		conf.WriteString("allow_anonymous true\n")
	}
	conf.WriteString(o.Extra)
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, conf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	s := &Server{Port: port, Dir: dir, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	s.cmd = exec.Command("mosquitto", "-c", path)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting mosquitto: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Ready when it says so (after opening its listeners) and accepts:
		// a connection alone could reach another process on a taken port.
		if strings.Contains(s.out.String(), " running") {
			c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
			if err == nil {
				c.Close()
				return s, nil
			}
		}
		select {
		case <-s.done:
			if strings.Contains(s.out.String(), "Address already in use") {
				return nil, fmt.Errorf("mosquitto: port %d: %w:\n%s", port, errPortTaken, s.out.String())
			}
			return nil, fmt.Errorf("mosquitto exited at start:\n%s\nconfig:\n%s", s.out.String(), conf.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("mosquitto did not listen on %d within 10s:\n%s", port, s.out.String())
		}
	}
}

// Stop ends mosquitto and waits for it.
func (s *Server) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// Reload sends SIGHUP: mosquitto rereads the options that allow it (the
// acl_file, the password_file, …).
func (s *Server) Reload() error { return s.cmd.Process.Signal(syscall.SIGHUP) }

// Log is everything mosquitto printed.
func (s *Server) Log() string { return s.out.String() }
