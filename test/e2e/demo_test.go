package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/syncbuf"
	"github.com/edgegw/edgegw/internal/testenv"
)

// buildBinary builds edgegw once per test binary run.
func buildBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "edgegw-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "edgegw")
		cmd := exec.Command("go", "build", "-o", binPath, "../../cmd/edgegw")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = &buildError{string(out)}
		}
	})
	if binErr != nil {
		t.Fatalf("building edgegw: %v", binErr)
	}
	return binPath
}

type buildError struct{ out string }

func (e *buildError) Error() string { return e.out }

// TestDemo runs `make demo`'s script for a few seconds: readings must arrive
// upstream over mutual TLS, and everything it started must be gone after.
func TestDemo(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	if testing.Short() {
		t.Skip("runs the demo for 6 s")
	}
	bin := buildBinary(t)
	cmd := exec.Command("bash", "../../scripts/demo.sh")
	cmd.Env = append(os.Environ(), "EDGEGW="+bin, "DEMO_SECONDS=6")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	s := string(out)
	door := regexp.MustCompile(`(?m)^sites/demo/gw-01/readings/door \{"gateway":"gw-01","device":"door","type":"sim","seq":\d+,.*"uid":"[0-9A-F]{10}"\}$`)
	climate := regexp.MustCompile(`(?m)^sites/demo/gw-01/readings/climate \{.*"values":\{"temperature":[0-9.]+,"humidity":[0-9.]+\},"units":\{"temperature":"°C","humidity":"%RH"\}\}$`)
	if len(door.FindAllString(s, -1)) < 3 || len(climate.FindAllString(s, -1)) < 1 {
		t.Fatalf("demo did not show readings arriving upstream:\n%s", s)
	}
	for _, want := range []string{"sites/demo/gw-01/status online", "sites/demo/gw-01/status/door online", "sites/demo/gw-01/status/climate online"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).MatchString(s) {
			t.Errorf("demo did not show the availability %q upstream:\n%s", want, s)
		}
	}
	if !strings.Contains(s, "demo: stopped and cleaned up") {
		t.Fatalf("demo did not clean up:\n%s", s)
	}
	m := regexp.MustCompile(`log (/tmp/edgegw-demo\.[A-Za-z0-9]+)/gateway.log`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("demo did not name its work dir:\n%s", s)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("demo left %s behind", m[1])
	}
	if out, _ := exec.Command("pgrep", "-f", m[1]).Output(); len(out) > 0 {
		t.Errorf("demo left processes running: %s", out)
	}
}

// TestDemoStopsOnSIGINTToItsGroup: stopped as `timeout -s INT 240 make demo`
// stops it (a SIGINT to its whole process group, from a script: background
// jobs of a non-interactive shell ignore SIGINT), the demo stops the viewer,
// the gateway and the upstream within a bounded time and leaves nothing
// running, even when the viewer does not exit on SIGTERM (as mosquitto_sub
// does not when its broker went away first: it keeps reconnecting).
func TestDemoStopsOnSIGINTToItsGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	bin := buildBinary(t)
	stubborn := t.TempDir()
	// A viewer that ignores SIGINT and SIGTERM (dispositions survive exec).
	if err := os.WriteFile(filepath.Join(stubborn, "mosquitto_sub"), []byte("#!/bin/bash\necho 'sites/demo/gw-01/readings/door {stub}'\ntrap '' INT TERM\nexec sleep 300\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		path string // prepended to PATH
	}{
		{"real viewer", ""},
		{"viewer ignoring SIGTERM", stubborn},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("bash", "../../scripts/demo.sh")
			cmd.Env = append(os.Environ(), "EDGEGW="+bin)
			if tc.path != "" {
				cmd.Env = append(cmd.Env, "PATH="+tc.path+":"+os.Getenv("PATH"))
			}
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			out := &syncbuf.Buffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pgid := cmd.Process.Pid
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
			reading := regexp.MustCompile(`(?m)^sites/demo/gw-01/readings/door \{`)
			deadline := time.Now().Add(60 * time.Second)
			for !reading.MatchString(out.String()) {
				select {
				case err := <-done:
					t.Fatalf("demo ended before showing a reading: %v\n%s", err, out.String())
				case <-time.After(100 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("no reading shown within 60s:\n%s", out.String())
				}
			}
			m := regexp.MustCompile(`log (/tmp/edgegw-demo\.[A-Za-z0-9]+)/gateway.log`).FindStringSubmatch(out.String())
			if m == nil {
				t.Fatalf("demo did not name its work dir:\n%s", out.String())
			}
			if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				ps, _ := exec.Command("pgrep", "-a", "-g", strconv.Itoa(pgid)).Output()
				t.Fatalf("demo still running 20s after SIGINT to its process group; left:\n%s\noutput:\n%s", ps, out.String())
			}
			if !strings.Contains(out.String(), "demo: stopped and cleaned up") {
				t.Errorf("demo did not clean up:\n%s", out.String())
			}
			if ps, _ := exec.Command("pgrep", "-a", "-g", strconv.Itoa(pgid)).Output(); len(ps) > 0 {
				t.Errorf("demo left processes running:\n%s", ps)
			}
			if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
				t.Errorf("demo left %s behind", m[1])
			}
		})
	}
}
