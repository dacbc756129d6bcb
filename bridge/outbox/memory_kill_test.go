package outbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// childMemory runs the memory window under kill -9: a producer appends as
// fast as it can and prints "A seq i" when a message completes; a fake
// upstream reads with Next and acknowledges most messages at once
// (reporting "U seq" before the Ack), holds some back until they have been
// spilled by age, never acknowledges a few, and drops and restores the
// link now and then. A kill lands while messages are in memory, spilling
// and half spilled.
func childMemory() {
	dir := os.Getenv("OUTBOX_DIR")
	round, _ := strconv.Atoi(os.Getenv("OUTBOX_ROUND"))
	o, err := Open(Options{Dir: dir, SegmentBytes: killSegBytes, SpillAfter: 5 * time.Millisecond, MemoryBytes: 32 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	o.SetLinkUp(true)
	// "U" lines are written out before the Ack (an ack in the ack log must
	// never lack its report); "A" lines go through a channel so that the
	// committer's callbacks do not wait for the pipe. One lock keeps lines
	// whole.
	var wmu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	upstream := func(seq uint64) {
		wmu.Lock()
		fmt.Fprintf(w, "U %d\n", seq)
		w.Flush()
		wmu.Unlock()
	}
	lines := make(chan string, 1<<16)
	go func() {
		for l := range lines {
			wmu.Lock()
			w.WriteString(l)
			if len(lines) == 0 {
				w.Flush()
			}
			wmu.Unlock()
		}
	}()
	go func() {
		rng := rand.New(rand.NewPCG(uint64(round), 7))
		var held []uint64
		for n := 0; ; n++ {
			m, err := o.Next(context.Background())
			if err != nil {
				fmt.Fprintln(os.Stderr, "child next:", err)
				os.Exit(2)
			}
			switch r := rng.IntN(20); {
			case r < 16:
				upstream(m.Seq)
				o.Ack(m.Seq)
			case r < 19:
				held = append(held, m.Seq)
			}
			if len(held) >= 40 {
				time.Sleep(6 * time.Millisecond) // past SpillAfter: the held ones spill first (a slow upstream)
				for _, s := range held {
					upstream(s)
					o.Ack(s)
				}
				held = held[:0]
			}
			if n%2000 == 1999 { // the link drops and comes back
				o.SetLinkUp(false)
				held = held[:0]
				o.Rewind()
				o.SetLinkUp(true)
			}
		}
	}()
	for i := 0; ; i++ {
		if i%32 == 31 {
			time.Sleep(200 * time.Microsecond) // pace: the upstream keeps up some of the time
		}
		m := Message{Topic: "kill/test", QoS: 1, Payload: killPayload(round, i)}
		err := o.AppendAsync(context.Background(), m, func(seq uint64, err error) {
			if err == nil {
				lines <- fmt.Sprintf("A %d %d\n", seq, i)
			}
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "child append:", err)
			os.Exit(2)
		}
	}
}

// TestKill9MemoryWindow: after kill -9 at a random moment, every message
// that completed (its local publisher got PUBACK) is on disk, whole and
// in order, or was acknowledged upstream.
func TestKill9MemoryWindow(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	var prevDiskMax uint64
	var fromDisk, fromUpstream int
	for round := 0; round < 30; round++ {
		delay := time.Duration(rng.Int64N(int64(150 * time.Millisecond)))
		appended, upstream := runMemoryChild(t, dir, round, delay)
		o, err := Open(Options{Dir: dir, SegmentBytes: killSegBytes})
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		got := map[uint64]Message{}
		ord := newKillOrder()
		for {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // everything on disk is durable after Open: no waiting
			m, err := o.Next(ctx)
			if errors.Is(err, context.Canceled) {
				break
			}
			if err != nil {
				t.Fatalf("round %d: Next: %v", round, err)
			}
			ord.check(t, round, m)
			got[m.Seq] = m
		}
		for seq, i := range appended {
			if m, ok := got[seq]; ok {
				if string(m.Payload) != string(killPayload(round, i)) {
					t.Fatalf("round %d: seq %d holds %q, want %q", round, seq, m.Payload, killPayload(round, i))
				}
				if seq <= prevDiskMax {
					t.Fatalf("round %d: seq %d reused (earlier rounds stored up to %d)", round, seq, prevDiskMax)
				}
				fromDisk++
				continue
			}
			if !upstream[seq] {
				o.mu.Lock()
				t.Fatalf("round %d: seq %d (i %d) completed but is neither on disk nor acknowledged upstream (delay %v; dropped %v, floor %d, acked %v, segs %+v, next %d)",
					round, seq, i, delay, o.st.dropped, o.floor, o.acked.spans(), o.segs, o.nextSeq)
			}
			fromUpstream++
		}
		prevDiskMax = max(prevDiskMax, ord.last)
		for seq := range got {
			if rng.IntN(4) != 0 {
				if err := o.Ack(seq); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if fromDisk == 0 || fromUpstream == 0 {
		t.Fatalf("completed messages found on disk %d, acknowledged upstream %d: want both kinds", fromDisk, fromUpstream)
	}
	t.Logf("completed messages: %d found on disk, %d acknowledged upstream", fromDisk, fromUpstream)
}

// runMemoryChild starts a memory child and SIGKILLs it after delay. It
// returns the completed seqs (seq -> i) and the seqs acknowledged upstream.
func runMemoryChild(t *testing.T, dir string, round int, delay time.Duration) (map[uint64]int, map[uint64]bool) {
	t.Helper()
	appended, upstream := map[uint64]int{}, map[uint64]bool{}
	env := []string{"OUTBOX_CHILD=memory", "OUTBOX_DIR=" + dir, "OUTBOX_ROUND=" + strconv.Itoa(round)}
	runChildKilled(t, round, delay, env, func(f []string) bool {
		switch {
		case len(f) == 3 && f[0] == "A":
			seq, i := parseChildSeq(f, true)
			appended[seq] = i
		case len(f) == 2 && f[0] == "U":
			seq, _ := parseChildSeq(f, false)
			upstream[seq] = true
		default:
			return false
		}
		return true
	})
	return appended, upstream
}
