package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
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
