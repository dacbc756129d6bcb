// Package rabbitmqtest starts a real RabbitMQ (Debian's rabbitmq-server
// with the rabbitmq_mqtt plugin: MQTT 3.1.1 only) for tests, as a second
// kind of upstream broker: an MQTT over TLS listener that requires a client
// certificate and logs the client in by its CN (mqtt.ssl_cert_login). It
// runs without systemd, with its own node name, Erlang port mapper, ports
// and directories, and is stopped when the test ends.
package rabbitmqtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/syncbuf"
)

// bin is where Debian installs RabbitMQ's own scripts (the ones in
// /usr/sbin switch to the rabbitmq user).
const bin = "/usr/lib/rabbitmq/bin"

// Options describe the broker.
type Options struct {
	CAFile, CertFile, KeyFile string
	// Users are created (any password: they log in by certificate) with
	// full permissions on the default vhost.
	Users []string
}

// Server is a running RabbitMQ.
type Server struct {
	Port int // MQTT over TLS
	Dir  string
	node string
	env  []string
	out  *syncbuf.Buffer
	cmd  *exec.Cmd
	epmd *exec.Cmd
	done chan struct{}
}

// Addr is 127.0.0.1:Port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Log is what the broker printed.
func (s *Server) Log() string { return s.out.String() }

// Require skips the test when rabbitmq-server is not installed, except in
// CI (CI=true), where it fails: make test installs it.
func Require(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(bin, "rabbitmq-server")); err == nil {
		return
	}
	msg := "rabbitmq-server is not installed: run 'make deps' as root, or apt-get install rabbitmq-server"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs RabbitMQ until the test ends and returns once it accepts MQTT
// connections (about 5-30 s).
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	s := &Server{Port: freePort(t), Dir: dir, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	epmdPort, distPort := freePort(t), freePort(t)
	s.node = fmt.Sprintf("edgegw%d@localhost", s.Port)
	conf := fmt.Sprintf(`listeners.tcp = none
mqtt.listeners.tcp = none
mqtt.listeners.ssl.default = 127.0.0.1:%d
ssl_options.cacertfile = %s
ssl_options.certfile = %s
ssl_options.keyfile = %s
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
mqtt.ssl_cert_login = true
ssl_cert_login_from = common_name
mqtt.allow_anonymous = false
loopback_users = none
log.console = true
log.console.level = info
log.file = false
`, s.Port, o.CAFile, o.CertFile, o.KeyFile)
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("rabbitmq.conf", conf)
	write("enabled_plugins", "[rabbitmq_mqtt].\n")
	s.env = append(os.Environ(),
		"HOME="+dir, // the Erlang cookie lives here
		"ERL_EPMD_PORT="+strconv.Itoa(epmdPort),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "none.conf"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_NODENAME="+s.node,
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "rabbitmq.pid"),
	)
	// Our own port mapper, so that it goes away with the test.
	s.epmd = exec.Command("epmd", "-port", strconv.Itoa(epmdPort))
	s.epmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.epmd.Start(); err != nil {
		t.Fatalf("rabbitmqtest: epmd: %v", err)
	}
	s.cmd = exec.Command(filepath.Join(bin, "rabbitmq-server"))
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		_ = s.epmd.Process.Kill()
		_ = s.epmd.Wait()
		t.Fatalf("rabbitmqtest: %v", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("rabbitmq log (last 4 KiB):\n%s", lastBytes(s.Log(), 4096))
		}
	})
	if out, err := s.Ctl(90*time.Second, "wait", "--timeout", "90", filepath.Join(dir, "rabbitmq.pid")); err != nil {
		t.Fatalf("rabbitmqtest: rabbitmq did not start: %v\n%s\n%s", err, out, lastBytes(s.Log(), 4096))
	}
	for _, u := range o.Users {
		for _, args := range [][]string{{"add_user", u, "cert-login-" + u}, {"set_permissions", "-p", "/", u, ".*", ".*", ".*"}} {
			if out, err := s.Ctl(30*time.Second, args...); err != nil {
				t.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("rabbitmqtest: MQTT port %d not open within 30s of startup:\n%s", s.Port, lastBytes(s.Log(), 4096))
		}
		select {
		case <-s.done:
			t.Fatalf("rabbitmqtest: rabbitmq exited:\n%s", lastBytes(s.Log(), 4096))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Ctl runs rabbitmqctl against this node.
func (s *Server) Ctl(timeout time.Duration, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(bin, "rabbitmqctl"), append([]string{"-n", s.node}, args...)...)
	cmd.Env = s.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("rabbitmqctl %v: no answer within %s", args, timeout)
	}
}

// stop asks the node to stop, then kills its process group (the server
// script and the Erlang VM it started) and the port mapper.
func (s *Server) stop() {
	_, _ = s.Ctl(20*time.Second, "stop")
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
	_ = s.epmd.Process.Kill()
	_ = s.epmd.Wait()
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
