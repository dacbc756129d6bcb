package outbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runChildKilled re-execs this test binary as a child with env added,
// SIGKILLs it after delay and hands every whole line the child printed on
// stdout, split into fields, to onLine; a line onLine refuses fails the
// test. It fails the test unless the child died by SIGKILL.
func runChildKilled(t *testing.T, round int, delay time.Duration, env []string, onLine func(f []string) bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killer := time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGKILL) })
	defer killer.Stop()
	// A backstop so a hung child cannot hang the test.
	backstop := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer backstop.Stop()
	br := bufio.NewReader(out)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break // a partial last line (no newline) is not a report
		}
		if !onLine(strings.Fields(line)) {
			t.Fatalf("round %d: bad child line %q", round, line)
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("round %d: child did not die by SIGKILL: %v\n%s", round, err, stderr.String())
	}
}

// parseChildSeq reads the seq in field 1 of a child line and, with wantI,
// the i in field 2.
func parseChildSeq(f []string, wantI bool) (uint64, int) {
	seq, _ := strconv.ParseUint(f[1], 10, 64)
	if !wantI {
		return seq, 0
	}
	i, _ := strconv.Atoi(f[2])
	return seq, i
}

// killOrder checks the messages read back after a kill one by one: seqs
// rising, payloads whole, and (round, i) in the order they were written.
type killOrder struct {
	last             uint64
	lastRound, lastI int
}

func newKillOrder() *killOrder { return &killOrder{lastRound: -1, lastI: -1} }

func (k *killOrder) check(t *testing.T, round int, m Message) {
	t.Helper()
	if m.Seq <= k.last {
		t.Fatalf("round %d: seq %d after %d", round, m.Seq, k.last)
	}
	k.last = m.Seq
	var r, i int
	if _, err := fmt.Sscanf(string(m.Payload), "round=%d i=%d", &r, &i); err != nil || string(m.Payload) != string(killPayload(r, i)) {
		t.Fatalf("round %d: seq %d has a damaged payload %q", round, m.Seq, m.Payload)
	}
	if r < k.lastRound || (r == k.lastRound && i <= k.lastI) {
		t.Fatalf("round %d: seq %d (round %d i %d) reordered after round %d i %d", round, m.Seq, r, i, k.lastRound, k.lastI)
	}
	k.lastRound, k.lastI = r, i
}
