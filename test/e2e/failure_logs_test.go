package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// keepLog writes a failed test's whole log (the gateway's across all its
// lives, or Mosquitto's) to a directory that outlives the test and returns
// the file's path: the test output carries only excerpts. The directory is
// $EDGEGW_TEST_LOGS when set (CI can keep it as an artifact), else the
// system's temp directory.
func keepLog(t testing.TB, name, text string) string {
	base := os.Getenv("EDGEGW_TEST_LOGS")
	if base == "" {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "edgegw-e2e-"+strings.ReplaceAll(t.Name(), "/", "-")+"-"+time.Now().UTC().Format("20060102T150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Sprintf("(not kept: %v)", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return fmt.Sprintf("(not kept: %v)", err)
	}
	return path
}

// notable picks from a log the lines that tell what went wrong — warnings,
// errors, panics, fatal signals and the gateway's start markers — at most
// max of them, the last ones when there are more.
func notable(log string, max int) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		switch {
		case strings.HasPrefix(l, "---- start"),
			strings.Contains(l, "level=WARN"), strings.Contains(l, "level=ERROR"),
			strings.Contains(l, "panic"), strings.Contains(l, "fatal error"),
			strings.Contains(l, "Error"), strings.Contains(l, "Warning"):
			out = append(out, l)
		}
	}
	skipped := 0
	if len(out) > max {
		skipped = len(out) - max
		out = out[skipped:]
	}
	s := strings.Join(out, "\n")
	if skipped > 0 {
		s = fmt.Sprintf("(%d earlier notable lines in the kept log)\n%s", skipped, s)
	}
	return s
}

// timeline records what a fault-injecting test did and when, relative to
// its start, so a failure (a lost or duplicated message) can be placed
// among the kills and link breaks around it.
type timeline struct {
	start  time.Time
	mu     sync.Mutex
	events []string
}

func newTimeline() *timeline { return &timeline{start: time.Now()} }

func (tl *timeline) add(format string, args ...any) {
	if tl == nil {
		return
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	now := time.Now()
	// The wall clock in UTC, as in the gateway's log, and the time since the start.
	tl.events = append(tl.events, fmt.Sprintf("%s %8.3fs ", now.UTC().Format("15:04:05.000"), now.Sub(tl.start).Seconds())+fmt.Sprintf(format, args...))
}

func (tl *timeline) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return strings.Join(tl.events, "\n")
}
