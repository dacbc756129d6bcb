package outbox

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The kill -9 tests re-exec this test binary as a writer child (selected by
// OUTBOX_CHILD in TestMain), kill it with SIGKILL at a random moment, reopen
// the outbox and check every seq the child reported durable.

const (
	killRounds   = 60
	killSegBytes = 64 << 10
)

func TestMain(m *testing.M) {
	switch os.Getenv("OUTBOX_CHILD") {
	case "":
		code := m.Run()
		if backlogDir != "" {
			os.RemoveAll(backlogDir)
		}
		os.Exit(code)
	case "append":
		childWriter(false)
	case "release":
		childWriter(true)
	case "memory":
		childMemory()
	}
	os.Exit(3) // the child only ends by SIGKILL
}

func killPayload(round, i int) []byte {
	return []byte(fmt.Sprintf("round=%d i=%d %s", round, i, strings.Repeat("p", i%64)))
}

// childWriter appends as fast as it can and prints "A seq i" for each
// append whose done reported durable; with release it also marks each
// durable message released and prints "R seq" once that is durable.
func childWriter(release bool) {
	dir := os.Getenv("OUTBOX_DIR")
	round, _ := strconv.Atoi(os.Getenv("OUTBOX_ROUND"))
	// OUTBOX_FSYNC is a mode, optionally with a commit interval: "batch/20ms".
	fsync, interval, _ := strings.Cut(os.Getenv("OUTBOX_FSYNC"), "/")
	mode, _ := ParseFsyncMode(fsync)
	commit, _ := time.ParseDuration(interval)
	o, err := Open(Options{Dir: dir, SegmentBytes: killSegBytes, Fsync: mode, CommitInterval: commit})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	lines := make(chan string, 1<<16)
	go func() {
		w := bufio.NewWriter(os.Stdout)
		for l := range lines {
			w.WriteString(l)
			if len(lines) == 0 {
				w.Flush()
			}
		}
	}()
	qos := byte(1)
	if release {
		qos = 2
	}
	for i := 0; ; i++ {
		m := Message{Topic: "kill/test", QoS: qos, Payload: killPayload(round, i), Origin: "child", OriginPID: uint16(i)}
		err := o.AppendAsync(context.Background(), m, func(seq uint64, err error) {
			if err != nil {
				return
			}
			lines <- fmt.Sprintf("A %d %d\n", seq, i)
			if release && i%3 == 0 {
				o.MarkReleased(seq, func(err error) {
					if err == nil {
						lines <- fmt.Sprintf("R %d\n", seq)
					}
				})
			}
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "child append:", err)
			os.Exit(2)
		}
	}
}

type killReport struct {
	appended map[uint64]int // seq -> i
	released map[uint64]bool
	maxSeq   uint64
}

// runKilledChild starts a writer child and SIGKILLs it after delay.
func runKilledChild(t *testing.T, kind, dir, fsync string, round int, delay time.Duration) killReport {
	t.Helper()
	rep := killReport{appended: map[uint64]int{}, released: map[uint64]bool{}}
	env := []string{"OUTBOX_CHILD=" + kind, "OUTBOX_DIR=" + dir, "OUTBOX_ROUND=" + strconv.Itoa(round), "OUTBOX_FSYNC=" + fsync}
	runChildKilled(t, round, delay, env, func(f []string) bool {
		switch {
		case len(f) == 3 && f[0] == "A":
			seq, i := parseChildSeq(f, true)
			rep.appended[seq] = i
			rep.maxSeq = max(rep.maxSeq, seq)
		case len(f) == 2 && f[0] == "R":
			seq, _ := parseChildSeq(f, false)
			rep.released[seq] = true
		default:
			return false
		}
		return true
	})
	return rep
}

func testKill9(t *testing.T, kind, fsync string, rounds int, maxDelay time.Duration) {
	short := testing.Short()
	if short {
		rounds = min(rounds, 8) // the unit tier: the same check, fewer kills
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	var prevMax uint64 // highest seq ever reported durable
	var reported, checked int
	for round := 0; round < rounds; round++ {
		delay := time.Duration(rng.Int64N(int64(maxDelay)))
		if short {
			delay = maxDelay/2 + delay/2 // fewer rounds: each one long enough to report
		}
		rep := runKilledChild(t, kind, dir, fsync, round, delay)
		reported += len(rep.appended)

		o, err := Open(Options{Dir: dir, SegmentBytes: killSegBytes})
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		// Messages overstates after a restart by the seqs an earlier run
		// acknowledged from memory and never wrote (Stats' doc): the reader
		// skips them. So read until the reader is at the end of what is
		// stored; every message reported durable is checked below.
		n := o.Stats().Messages
		got := map[uint64]Message{}
		ord := newKillOrder()
		for k := uint64(0); k < n; k++ {
			o.mu.Lock()
			atEnd := o.cursor >= o.durableNext && len(o.mem) == 0
			o.mu.Unlock()
			if atEnd {
				break
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			m, err := o.Next(ctx)
			cancel()
			if err != nil {
				o.mu.Lock()
				exec.Command("cp", "-a", dir, "/tmp/outbox-fail").Run()
				t.Fatalf("round %d: Next after %d of %d messages: %v (floor %d, acked %v, cursor %d, written %d, durable %d, segs %+v)",
					round, k, n, err, o.floor, o.acked.spans(), o.cursor, o.writtenNext, o.durableNext, o.segs)
			}
			ord.check(t, round, m)
			got[m.Seq] = m
		}
		for seq, i := range rep.appended {
			m, ok := got[seq]
			if !ok {
				t.Fatalf("round %d: seq %d reported durable is missing (delay %v)", round, seq, delay)
			}
			if string(m.Payload) != string(killPayload(round, i)) {
				t.Fatalf("round %d: seq %d holds %q, want %q", round, seq, m.Payload, killPayload(round, i))
			}
			if seq <= prevMax {
				t.Fatalf("round %d: seq %d reused (earlier rounds reached %d)", round, seq, prevMax)
			}
			checked++
		}
		for seq := range rep.released {
			if m, ok := got[seq]; !ok || !m.Released {
				t.Fatalf("round %d: seq %d reported released comes back as %+v", round, seq, m)
			}
		}
		prevMax = max(prevMax, rep.maxSeq)
		// Acknowledge a random part, oldest first, so the log keeps turning
		// over (segment deletion and ack-log compaction get killed too).
		ackTo := ord.last
		if n > 0 && rng.IntN(4) == 0 {
			ackTo = ord.last - uint64(rng.IntN(int(n)))
		}
		for seq := range got {
			if seq <= ackTo {
				if err := o.Ack(seq); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if reported == 0 {
		t.Fatal("the child never reported a durable append")
	}
	t.Logf("%d rounds, %d durable appends reported and found", rounds, checked)
}

func TestKill9Append(t *testing.T) { testKill9(t, "append", "batch", killRounds, 120*time.Millisecond) }

// With a commit interval, messages wait for the next commit: what was
// reported durable must still be there, and only that.
func TestKill9AppendCommitInterval(t *testing.T) {
	testKill9(t, "append", "batch/20ms", killRounds/4, 300*time.Millisecond)
}

func TestKill9AppendFsyncAlways(t *testing.T) {
	testKill9(t, "append", "always", killRounds/4, 500*time.Millisecond)
}

// FsyncInterval reports messages after the write, before the fsync: they
// must still survive kill -9 of the process (not a power loss).
func TestKill9AppendFsyncInterval(t *testing.T) {
	testKill9(t, "append", "interval", killRounds/4, 120*time.Millisecond)
}

func TestKill9MarkReleased(t *testing.T) {
	testKill9(t, "release", "batch", killRounds, 120*time.Millisecond)
}
