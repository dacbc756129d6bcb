// Package testenv sorts the tests into two tiers. The unit tier
// (`go test -short ./...`, make test-short) needs nothing but Go: no
// Mosquitto, qemu, systemd-nspawn or root. Everything else is the full tier
// (make test), which CI runs as root with every Debian package installed.
//
// A test that needs more than Go calls one of these first. Under -short it
// is skipped with a message naming what it needs. Without -short a missing
// tool or root is a failure that names the fix when the test runs in CI
// (CI=true) or as root (make test checks the packages first, so a missing
// one there is a broken machine, not a reason to skip); for a developer
// without root it is a skip with the same message.
package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// CI reports whether the tests run in CI (environment CI=true), where
// nothing may be skipped for want of a tool.
func CI() bool { return os.Getenv("CI") == "true" }

// Integration skips the test under -short: it needs what is named by needs
// (e.g. "a real Mosquitto", "the built binary and kill -9").
func Integration(t testing.TB, needs string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("full tier (make test): needs %s; skipped under -short", needs)
	}
}

// Tools skips the test under -short, and makes sure each tool is on PATH;
// pkg is the Debian package list that installs them.
func Tools(t testing.TB, pkg string, tools ...string) {
	t.Helper()
	Integration(t, strings.Join(tools, ", "))
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		unavailable(t, strings.Join(missing, ", ")+" not installed: run 'sudo make deps' (Debian packages "+pkg+")")
	}
}

// Root skips the test under -short and requires root, saying why it needs it.
func Root(t testing.TB, why string) {
	t.Helper()
	Integration(t, "root ("+why+")")
	if os.Geteuid() != 0 {
		unavailable(t, "needs root: "+why+" (make test runs as root in CI)")
	}
}

func unavailable(t testing.TB, msg string) {
	t.Helper()
	if CI() || os.Geteuid() == 0 {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
