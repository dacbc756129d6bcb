package board

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/syncbuf"
	"github.com/edgegw/edgegw/internal/testenv"
)

// container is a Debian root booted with systemd as PID 1 under
// systemd-nspawn, sharing the host's network.
type container struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan error
	pid  int // the container's PID 1, as the host sees it
}

// cgroup2Dir is where the cgroup2 hierarchy is mounted ("" if nowhere).
func cgroup2Dir() string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 2 && fields[2] == "cgroup2" {
			return fields[1]
		}
	}
	return ""
}

// bootContainer boots root (made by scripts/nspawn-root.sh) with the
// changes kept in memory (--volatile=overlay: the cached root stays as it
// was), host directory share bound read-only at /mnt/edgegw, and waits until
// its systemd has finished booting. It returns the boot time.
func bootContainer(t *testing.T, root, share string) (*container, time.Duration) {
	t.Helper()
	cg := cgroup2Dir()
	if cg == "" {
		t.Fatal("no cgroup2 hierarchy mounted: systemd-nspawn needs one (unified or hybrid)")
	}
	// nspawn runs from a cgroup2 sub-group of its own, which --keep-unit
	// makes the container's: nothing to register with a host systemd.
	group := filepath.Join(cg, fmt.Sprintf("edgegw-nspawn-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(group, 0o755); err != nil {
		t.Fatalf("cgroup sub-group for the container: %v", err)
	}
	name := fmt.Sprintf("edgegw-test-%d", os.Getpid())
	args := []string{"-b", "--register=no", "--keep-unit", "-D", root, "--machine=" + name,
		"--volatile=overlay", "--link-journal=no", "--resolv-conf=off", "--timezone=off",
		// nspawn's own seccomp filter blocks bpf (so DevicePolicy= would be
		// a no-op) and adjtimex (which the unit allows, read-only).
		"--system-call-filter=bpf adjtimex",
		"--bind-ro=" + share + ":/mnt/edgegw", "--console=pipe", "--quiet"}
	cmd := exec.Command("sh", append([]string{"-c", `echo $$ > "$0/cgroup.procs" && exec systemd-nspawn "$@"`, group}, args...)...)
	// Without the unified hierarchy nspawn gives the container cgroup v1,
	// where DeviceAllow= is silently not enforced.
	cmd.Env = append(os.Environ(), "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &container{t: t, cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() {
		c.poweroff()
		removeCgroup(t, group)
		if t.Failed() {
			t.Logf("container console:\n%s", tail(out.String(), 60))
		}
	})
	waitUntil(t, 60*time.Second, "the container's PID 1", func() bool {
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("systemd-nspawn exited: %v\n%s", err, out.String())
		default:
		}
		c.pid = containerInit(cmd.Process.Pid)
		return c.pid != 0
	})
	// Booted: is-system-running waits for the boot to finish; "degraded"
	// (some unit of the minimal root failed) still counts as booted.
	// Until PID 1 has its private socket, systemctl cannot connect at all.
	var state string
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, _ := c.runErr(30*time.Second, "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(out)
		if state == "running" || state == "degraded" {
			break
		}
		if time.Now().After(deadline) {
			failed, _ := c.runErr(time.Minute, "systemctl", "--failed", "--no-pager")
			t.Fatalf("container did not finish booting within 90s: %q\n%s", state, failed)
		}
		time.Sleep(100 * time.Millisecond) // PID 1 has no event we can wait on from outside
	}
	boot := time.Since(t0)
	if state == "degraded" {
		t.Logf("container booted degraded:\n%s", c.run(time.Minute, "systemctl", "--failed", "--no-pager"))
	}
	return c, boot
}

// removeCgroup removes a cgroup and the sub-groups the container's systemd
// made in it, deepest first (a cgroup with children cannot be removed).
func removeCgroup(t *testing.T, group string) {
	var dirs []string
	_ = filepath.WalkDir(group, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		// A group empties a moment after its last process exits.
		for try := 0; try < 50; try++ {
			if err := os.Remove(dirs[i]); err == nil || os.IsNotExist(err) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := os.Stat(group); err == nil {
		t.Errorf("cgroup %s is left behind", group)
	}
}

// containerInit finds the container's PID 1 among nspawn's descendants.
func containerInit(nspawn int) int {
	seen := map[int]bool{}
	queue := []int{nspawn}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		if p != nspawn {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
			if err == nil {
				for _, l := range strings.Split(string(st), "\n") {
					if f := strings.Fields(l); len(f) > 2 && f[0] == "NSpid:" && f[len(f)-1] == "1" {
						return p
					}
				}
			}
		}
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, p))
		for _, k := range strings.Fields(string(kids)) {
			if n, err := strconv.Atoi(k); err == nil {
				queue = append(queue, n)
			}
		}
	}
	return 0
}

// runErr runs argv inside the container (all its namespaces) and returns
// its combined output and error.
func (c *container) runErr(timeout time.Duration, argv ...string) (string, error) {
	c.t.Helper()
	return runCmd(c.t, timeout, "nsenter", append([]string{"-t", strconv.Itoa(c.pid), "-m", "-u", "-i", "-n", "-p", "-C", "--"}, argv...)...)
}

// run is runErr that fails the test on an error.
func (c *container) run(timeout time.Duration, argv ...string) string {
	c.t.Helper()
	out, err := c.runErr(timeout, argv...)
	if err != nil {
		c.t.Fatalf("in the container: %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return out
}

// show is one property of a unit (systemctl show -P).
func (c *container) show(unit, prop string) string {
	c.t.Helper()
	return strings.TrimSpace(c.run(30*time.Second, "systemctl", "show", "-P", prop, unit))
}

// poweroff shuts the container down cleanly, or kills it after 30 s.
func (c *container) poweroff() {
	if c.pid != 0 {
		_, _ = runCmd(c.t, 30*time.Second, "nsenter", "-t", strconv.Itoa(c.pid), "-m", "-p", "--", "systemctl", "poweroff", "--no-block")
	}
	select {
	case <-c.done:
		return
	case <-time.After(30 * time.Second):
	}
	// Killing the container's PID 1 ends its whole PID namespace; killing
	// only nspawn would leave the container's processes running.
	if c.pid != 0 {
		_ = syscallKill(c.pid)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestDebUnderSystemd installs the amd64 .deb into a Debian container booted
// with systemd as PID 1 and checks the unit's life there: enable --now,
// active with its STATUS= text, readings arriving at a Mosquitto on the
// host's loopback over mutual TLS, the watchdog restarting a stopped
// (SIGSTOP) process, its lines in the journal, a clean stop, a bad
// configuration not restarted (exit 3), remove and reinstall leaving the unit
// usable (not masked), and purge removing what it should. It reports the
// boot time and `systemd-analyze security`'s score.
func TestDebUnderSystemd(t *testing.T) {
	testenv.Integration(t, "root, systemd-nspawn and debootstrap")
	testenv.Root(t, "it boots a container with systemd-nspawn")
	need(t, "systemd-nspawn", "debootstrap", "nsenter", "dpkg")
	deb := debs(t)["amd64"]

	cache := os.Getenv("EDGEGW_NSPAWN_CACHE")
	if cache == "" {
		cache = "/var/cache/edgegw-test/nspawn"
	}
	t0 := time.Now()
	rootOut := mustRun(t, 15*time.Minute, "bash", filepath.Join(repoRoot, "scripts", "nspawn-root.sh"), cache)
	root := strings.TrimSpace(rootOut[strings.LastIndex(strings.TrimSpace(rootOut), "\n")+1:])
	t.Logf("container root %s ready in %v", root, time.Since(t0).Round(time.Second))

	// What the container sees at /mnt/edgegw: the package, certificates and
	// configuration, readable by its edgegw user once copied into /etc.
	share := t.TempDir()
	if err := os.Chmod(share, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, time.Minute, "cp", deb, filepath.Join(share, "edgegw.deb"))
	f := pki(t)
	gw, _ := f.Client("gw-01")
	for src, dst := range map[string]string{f.CA.Cert: "ca.crt", gw.Cert: "client.crt", gw.Key: "client.key"} {
		mustRun(t, time.Minute, "cp", src, filepath.Join(share, dst))
	}
	upPort := mosquittotest.FreePort(t)
	up := upstream(t, f, upPort)
	brokerAddr, httpAddr := freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`[gateway]
id = "gw-01"
data_dir = "/var/lib/edgegw"
http_listen = %q
[broker]
listen = %q
[upstream]
address = "mqtts://%s"
backoff_min = "100ms"
backoff_max = "500ms"
[upstream.tls]
cafile = "/etc/edgegw/ca.crt"
certfile = "/etc/edgegw/client.crt"
keyfile = "/etc/edgegw/client.key"
[[upstream.topic]]
pattern = "readings/#"
direction = "out"
qos = 1
remote_prefix = "site/"
[[device]]
name = "sim1"
type = "sim"
interval = "200ms"
`, httpAddr, brokerAddr, up.Addr())
	if err := os.WriteFile(filepath.Join(share, "gateway.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(share, "bad.toml"), []byte("[gateway]\nid = \"gw-01\"\nno_such_key = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, f, up.Addr(), "site/#")

	c, boot := bootContainer(t, root, share)
	t.Logf("FIGURE container boot (nspawn start to is-system-running): %v", boot.Round(10*time.Millisecond))

	// Install; the unit is installed but not enabled (the config comes first).
	c.run(2*time.Minute, "dpkg", "-i", "/mnt/edgegw/edgegw.deb")
	if st, _ := c.runErr(30*time.Second, "systemctl", "is-enabled", "edgegw"); strings.TrimSpace(st) != "disabled" {
		t.Errorf("after install the unit is %q; want disabled", strings.TrimSpace(st))
	}
	install := `set -e
install -m 0640 -g edgegw /mnt/edgegw/gateway.toml /etc/edgegw/gateway.toml
install -m 0644 /mnt/edgegw/ca.crt /mnt/edgegw/client.crt /etc/edgegw/
install -m 0640 -g edgegw /mnt/edgegw/client.key /etc/edgegw/client.key
mkdir -p /etc/systemd/system/edgegw.service.d
# The watchdog test must not wait the unit's 60 s.
printf '[Service]\nWatchdogSec=3s\n' > /etc/systemd/system/edgegw.service.d/test.conf
systemctl daemon-reload`
	c.run(time.Minute, "sh", "-c", install)

	// enable --now: active, with its STATUS= text, readings upstream.
	c.run(2*time.Minute, "systemctl", "enable", "--now", "edgegw")
	if st := c.show("edgegw", "ActiveState"); st != "active" {
		t.Fatalf("after enable --now: %s\n%s", st, c.run(time.Minute, "journalctl", "-u", "edgegw", "--no-pager"))
	}
	waitUntil(t, 30*time.Second, "a STATUS= line", func() bool { return strings.Contains(c.show("edgegw", "StatusText"), "devices") })
	t.Logf("StatusText: %s", c.show("edgegw", "StatusText"))
	waitUntil(t, 30*time.Second, "readings from the container at the upstream", func() bool { return sub.count() >= 3 })
	if got := string(sub.snapshot()[0].Payload()); !strings.Contains(got, `"device":"sim1"`) {
		t.Errorf("reading upstream: %s", got)
	}
	if j := c.run(time.Minute, "journalctl", "-u", "edgegw", "--no-pager"); !strings.Contains(j, "edgegw running") || !strings.Contains(j, "upstream link up") {
		t.Errorf("journalctl -u edgegw lacks the gateway's lines:\n%s", j)
	}
	// No warning from systemd about the unit itself (a DeviceAllow= path
	// that does not exist here warned at every start).
	if j := c.run(time.Minute, "journalctl", "--no-pager", "-b", "_PID=1"); strings.Contains(j, "edgegw.service: Couldn't") || strings.Contains(j, "gpiomem") {
		t.Errorf("systemd warns about the unit:\n%s", tail(j, 30))
	}
	// The unit orders itself after network-online.target but does not pull
	// it in: a boot without network must not wait for it.
	if w := c.show("edgegw", "Wants"); strings.Contains(w, "network-online.target") || strings.Contains(w, "time-sync.target") {
		t.Errorf("Wants=%s; want neither network-online.target nor time-sync.target", w)
	}

	// The watchdog: a stopped process gets no pings; systemd restarts it.
	pid1 := c.show("edgegw", "MainPID")
	c.run(30*time.Second, "kill", "-STOP", pid1)
	waitUntil(t, 60*time.Second, "the watchdog to restart the stopped gateway", func() bool {
		p := c.show("edgegw", "MainPID")
		return p != pid1 && p != "0" && c.show("edgegw", "ActiveState") == "active"
	})
	if n := c.show("edgegw", "NRestarts"); n == "0" {
		t.Errorf("NRestarts = 0 after the watchdog fired")
	}
	if j := c.run(time.Minute, "journalctl", "-u", "edgegw", "--no-pager"); !strings.Contains(j, "Watchdog timeout") {
		t.Errorf("the journal does not name the watchdog:\n%s", tail(j, 30))
	}
	before := sub.count()
	waitUntil(t, 30*time.Second, "readings again after the restart", func() bool { return sub.count() >= before+3 })

	// Stop is clean: the process exits 0 well within TimeoutStopSec.
	ts := time.Now()
	c.run(time.Minute, "systemctl", "stop", "edgegw")
	t.Logf("FIGURE systemctl stop: %v", time.Since(ts).Round(time.Millisecond))
	if r, st := c.show("edgegw", "Result"), c.show("edgegw", "ExecMainStatus"); r != "success" || st != "0" {
		t.Errorf("after stop: Result=%s ExecMainStatus=%s; want success, 0", r, st)
	}

	// A bad configuration exits 3 and is not restarted.
	c.run(time.Minute, "sh", "-c", "install -m 0640 -g edgegw /mnt/edgegw/bad.toml /etc/edgegw/gateway.toml && systemctl reset-failed edgegw")
	if _, err := c.runErr(time.Minute, "systemctl", "start", "edgegw"); err == nil {
		t.Errorf("systemctl start with a bad configuration succeeded")
	}
	waitUntil(t, 20*time.Second, "the failed start to settle", func() bool { return c.show("edgegw", "ActiveState") == "failed" })
	if st, n := c.show("edgegw", "ExecMainStatus"), c.show("edgegw", "NRestarts"); st != "3" || n != "0" {
		t.Errorf("bad config: ExecMainStatus=%s NRestarts=%s; want 3 and no restart", st, n)
	}
	c.run(time.Minute, "sh", "-c", "install -m 0640 -g edgegw /mnt/edgegw/gateway.toml /etc/edgegw/gateway.toml && systemctl reset-failed edgegw")

	// systemd-analyze security: the score, reported.
	sec, _ := c.runErr(time.Minute, "systemd-analyze", "security", "edgegw", "--no-pager")
	if m := regexp.MustCompile(`Overall exposure level for edgegw.service: ([0-9.]+) (\S+)`).FindStringSubmatch(sec); m != nil {
		t.Logf("FIGURE systemd-analyze security edgegw: %s %s", m[1], m[2])
		if testing.Verbose() {
			for _, l := range strings.Split(sec, "\n") {
				if strings.Contains(l, "✗") {
					t.Logf("  %s", strings.TrimSpace(l))
				}
			}
		}
	} else {
		t.Errorf("no exposure level in systemd-analyze security:\n%s", sec)
	}

	// Remove and reinstall: the unit must not stay masked.
	c.run(2*time.Minute, "dpkg", "-r", "edgegw")
	c.run(2*time.Minute, "dpkg", "-i", "/mnt/edgegw/edgegw.deb")
	if st, _ := c.runErr(30*time.Second, "systemctl", "is-enabled", "edgegw"); strings.TrimSpace(st) == "masked" {
		t.Errorf("after remove and reinstall the unit is masked")
	}
	c.run(time.Minute, "sh", "-c", install)
	c.run(2*time.Minute, "systemctl", "start", "edgegw")
	if st := c.show("edgegw", "ActiveState"); st != "active" {
		t.Errorf("after reinstall: %s", st)
	}

	// Purge: data, configuration and unit go; the system user stays.
	c.run(2*time.Minute, "dpkg", "--purge", "edgegw")
	for _, p := range []string{"/var/lib/edgegw", "/etc/edgegw/gateway.toml", "/lib/systemd/system/edgegw.service", "/usr/bin/edgegw", "/etc/systemd/system/multi-user.target.wants/edgegw.service"} {
		if out, err := c.runErr(30*time.Second, "test", "!", "-e", p); err != nil {
			t.Errorf("after purge %s is still there %s", p, out)
		}
	}
	if st, _ := c.runErr(30*time.Second, "systemctl", "is-enabled", "edgegw"); strings.Contains(st, "masked") {
		t.Errorf("after purge the unit is masked")
	}
	if _, err := c.runErr(30*time.Second, "getent", "passwd", "edgegw"); err != nil {
		t.Errorf("the edgegw system user went with purge (Debian keeps system users)")
	}
}
