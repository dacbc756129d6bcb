package outbox

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/powerfs"
	"github.com/edgegw/edgegw/internal/syncbuf"
)

// The crash-point enumerator, in the style of ALICE and SQLite's crash
// tests: a workload runs the outbox on a powerfs mount that records every
// file operation, with the test's own marks in the same log (a message
// reported durable, an ack made, a Close returned). Then, for every point
// of that log, the state a power cut would leave there (unsynced writes and
// entry changes dropped, or torn: a random prefix kept, the last write cut
// at a sector) is written to a fresh directory, the outbox is opened on it,
// and the contract is checked against what the marks before that point
// promise.

// pcSegmentBytes is small, so that 200 messages fill several segments.
const pcSegmentBytes = 4 << 10

// pcMark is a mark of the workload in the operation log.
type pcMark struct {
	kind string // "durable", "acked", "closed"
	seq  uint64
}

func parsePCMark(note string) pcMark {
	kind, num, _ := strings.Cut(note, " ")
	seq, _ := strconv.ParseUint(num, 10, 64)
	return pcMark{kind, seq}
}

// pcWorkload drives the outbox on dir (a powerfs mount recording into m):
// 200 messages (one in seven QoS 2, marked released) over a few 4 KiB
// segments, acks in and out of order,
// segments deleted, two Close/Open cycles (Close compacts the ack log:
// write, fsync, rename, fsync dir). It returns seq -> payload of every
// message appended.
func pcWorkload(t *testing.T, dir string, fsync FsyncMode, m *powerfs.Model, logw io.Writer) map[uint64]string {
	t.Helper()
	stored := map[uint64]string{}
	// The workload's own log (Debug: gaps skipped, records dropped) is
	// printed when a crash point fails, to tell the outbox's doing from the
	// file system's.
	opts := Options{Dir: dir, SegmentBytes: pcSegmentBytes, Fsync: fsync,
		Logger: slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	open := func() *Outbox {
		o, err := Open(opts)
		if err != nil {
			t.Fatalf("workload: Open: %v", err)
		}
		return o
	}
	closeO := func(o *Outbox) {
		if err := o.Close(); err != nil {
			t.Fatalf("workload: Close: %v", err)
		}
		m.Mark("closed")
	}
	appendBatch := func(o *Outbox, from, n int) {
		type res struct {
			seq uint64
			err error
			i   int
		}
		ch := make(chan res, n)
		for i := from; i < from+n; i++ {
			msg := Message{Topic: fmt.Sprintf("readings/dev%d", i%3), QoS: pcQoS(i), Payload: []byte(fmt.Sprintf("m-%04d-%s", i, strings.Repeat("x", i%40)))}
			err := o.AppendAsync(context.Background(), msg, func(seq uint64, err error) {
				if err == nil {
					m.Mark(fmt.Sprintf("durable %d", seq))
				}
				ch <- res{seq, err, i}
			})
			if err != nil {
				t.Fatalf("workload: append %d: %v", i, err)
			}
		}
		for k := 0; k < n; k++ {
			select {
			case r := <-ch:
				if r.err != nil {
					t.Fatalf("workload: append %d: %v", r.i, r.err)
				}
				stored[r.seq] = fmt.Sprintf("readings/dev%d m-%04d-%s", r.i%3, r.i, strings.Repeat("x", r.i%40))
			case <-time.After(10 * time.Second):
				t.Fatal("workload: an append was not reported within 10s")
			}
		}
	}
	// An ack is marked before Ack is called: from the call on, the
	// committer may write it (merged with an earlier one) before Ack has
	// returned to a goroutine that would mark it only then. Marked after,
	// a cut between that write and the mark found the message "gone
	// though not acked" (CI, once, under -race: Ack(196) merged into the
	// record written for Ack(195)).
	ack := func(o *Outbox, seq uint64) {
		m.Mark(fmt.Sprintf("acked %d", seq))
		if err := o.Ack(seq); err != nil {
			t.Fatalf("workload: ack %d: %v", seq, err)
		}
	}
	next := func(o *Outbox) Message {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		msg, err := o.Next(ctx)
		if err != nil {
			t.Fatalf("workload: next: %v", err)
		}
		return msg
	}

	release := func(o *Outbox, seq uint64) {
		ch := make(chan error, 1)
		o.MarkReleased(seq, func(err error) { ch <- err })
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("workload: mark released %d: %v", seq, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("workload: mark released %d not reported within 10s", seq)
		}
		m.Mark(fmt.Sprintf("released %d", seq))
	}

	// Life 1: 80 messages in batches of 4; each batch read back and acked
	// except every fifth message (holes: out-of-order acks). The QoS 2
	// ones are marked released (PUBREC) first.
	o := open()
	var holes []uint64
	for b := 0; b < 20; b++ {
		appendBatch(o, b*4, 4)
		for k := 0; k < 4; k++ {
			msg := next(o)
			if msg.QoS == 2 {
				release(o, msg.Seq)
			}
			if msg.Seq%5 == 0 {
				holes = append(holes, msg.Seq)
				continue
			}
			ack(o, msg.Seq)
		}
	}
	closeO(o)

	// Life 2: the holes come back first and are acked; then 120 more in
	// batches of 6, each acked one batch late.
	o = open()
	for range holes {
		ack(o, next(o).Seq)
	}
	var lag []uint64
	for b := 0; b < 20; b++ {
		appendBatch(o, 80+b*6, 6)
		for _, s := range lag {
			ack(o, s)
		}
		lag = lag[:0]
		for k := 0; k < 6; k++ {
			lag = append(lag, next(o).Seq)
		}
	}
	closeO(o)

	// Life 3: the last batch comes back and is acked.
	o = open()
	for range lag {
		ack(o, next(o).Seq)
	}
	closeO(o)
	return stored
}

// pcQoS is the QoS of the workload's message i: one in seven is QoS 2.
func pcQoS(i int) byte {
	if i%7 == 3 {
		return 2
	}
	return 1
}

// pcExpect is what the marks up to a crash point promise.
type pcExpect struct {
	released     map[uint64]bool // MarkReleased reported durable
	durable      map[uint64]bool // done callback fired without error
	acked        map[uint64]bool // Ack called (its effect may reach the disk before it returns)
	ackedDurable map[uint64]bool // acked before a Close returned
	maxSeq       uint64          // highest seq reported durable or acked
}

func (e *pcExpect) add(mk pcMark) {
	switch mk.kind {
	case "durable":
		e.durable[mk.seq] = true
		e.maxSeq = max(e.maxSeq, mk.seq)
	case "acked":
		e.acked[mk.seq] = true
		e.maxSeq = max(e.maxSeq, mk.seq)
	case "released":
		e.released[mk.seq] = true
	case "closed":
		for s := range e.acked {
			e.ackedDurable[s] = true
		}
	}
}

// pcResult is what one crash point showed.
type pcResult struct {
	dups     int // acked (not yet durably) messages returned again
	returned int
}

// checkCrashPoint opens the outbox on dir (the state left by a cut) and
// checks the contract against e. It returns a description of the first
// violation, or "".
func checkCrashPoint(dir string, fsync FsyncMode, e *pcExpect, stored map[uint64]string) (pcResult, string) {
	var res pcResult
	o, err := Open(Options{Dir: dir, SegmentBytes: pcSegmentBytes, Fsync: fsync})
	if err != nil {
		return res, fmt.Sprintf("Open failed: %v", err)
	}
	defer o.Close()
	want := o.Stats().Messages
	got := map[uint64]bool{}
	var last uint64
	for uint64(len(got))+o.Stats().Dropped["corrupt"] < want {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		msg, err := o.Next(ctx)
		cancel()
		if err != nil {
			return res, fmt.Sprintf("Next after %d of %d messages: %v", len(got), want, err)
		}
		if msg.Seq <= last {
			return res, fmt.Sprintf("seq %d returned after %d: seqs must ascend", msg.Seq, last)
		}
		last = msg.Seq
		if s, ok := stored[msg.Seq]; !ok || s != msg.Topic+" "+string(msg.Payload) {
			return res, fmt.Sprintf("seq %d is %s %q, which was never appended with that seq (appended: %q)", msg.Seq, msg.Topic, msg.Payload, s)
		}
		if e.ackedDurable[msg.Seq] {
			return res, fmt.Sprintf("seq %d returned although its ack was made durable (Close) before the cut", msg.Seq)
		}
		if e.acked[msg.Seq] {
			res.dups++
		} else if e.released[msg.Seq] && !msg.Released {
			return res, fmt.Sprintf("QoS 2 seq %d was marked released (durably) yet comes back to be sent as a PUBLISH again", msg.Seq)
		}
		got[msg.Seq] = true
	}
	res.returned = len(got)
	if c := o.Stats().Dropped["corrupt"]; c > 0 {
		return res, fmt.Sprintf("%d records dropped as corrupt: a cut may tear only what was not durable", c)
	}
	for s := range e.durable {
		if !got[s] && !e.acked[s] {
			return res, fmt.Sprintf("seq %d was reported durable and not acked, yet it is gone (returned %d messages)", s, len(got))
		}
	}
	// A new message after recovery takes a seq never used before.
	seq, err := o.Append(context.Background(), Message{Topic: "readings/after", QoS: 1, Payload: []byte("after")})
	if err != nil {
		return res, fmt.Sprintf("append after recovery: %v", err)
	}
	if seq <= e.maxSeq || seq <= last {
		return res, fmt.Sprintf("append after recovery got seq %d, already used (highest durable or acked %d, highest returned %d)", seq, e.maxSeq, last)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if msg, err := o.Next(ctx); err != nil || msg.Seq != seq {
		return res, fmt.Sprintf("the message appended after recovery (seq %d) did not come back: %v %v", seq, msg.Seq, err)
	}
	return res, ""
}

// TestPowerCutCrashPoints enumerates every crash point of pcWorkload, in
// the fsync modes that promise durability (FsyncInterval says it does not
// survive a power loss). At each point (after every file operation) it
// cuts in two ways, dropping all that is not durable and tearing it (a
// seeded random prefix kept), and at every eighth point it also keeps
// everything (what kill -9 leaves).
func TestPowerCutCrashPoints(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run the power-cut tests: %v", err)
		}
		t.Skipf("skipping: %v (run as root with /dev/fuse)", err)
	}
	for _, c := range []struct {
		fsync FsyncMode
		every int // check every n-th point (FsyncAlways has three times as many)
	}{{FsyncBatch, 1}, {FsyncAlways, 3}} {
		t.Run(c.fsync.String(), func(t *testing.T) { crashPoints(t, c.fsync, c.every) })
	}
}

func crashPoints(t *testing.T, fsync FsyncMode, every int) {
	model := powerfs.NewModel()
	srv, err := powerfs.Mount(model, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	model.Record(true)
	dir := filepath.Join(srv.Dir(), "outbox")
	var wlog syncbuf.Buffer
	stored := pcWorkload(t, dir, fsync, model, &wlog)
	model.Record(false)
	ops := model.Ops()

	replay := powerfs.NewModel()
	e := &pcExpect{released: map[uint64]bool{}, durable: map[uint64]bool{}, acked: map[uint64]bool{}, ackedDurable: map[uint64]bool{}}
	scratch := t.TempDir()
	var points, fileOps, syncs, maxDups, cutsChecked int
	var dupAt string
	counts := map[powerfs.CutMode]int{}
	start := time.Now()
	for k := 0; k <= len(ops); k++ {
		if k > 0 {
			op := ops[k-1]
			if op.Kind == powerfs.OpMark {
				e.add(parsePCMark(op.Note))
			} else if err := replay.Apply(op); err != nil {
				t.Fatalf("replay op %d (%v): %v", k-1, op, err)
			} else {
				fileOps++
				if op.Kind == powerfs.OpFsync || op.Kind == powerfs.OpFsyncDir {
					syncs++
				}
			}
		}
		if k < len(ops) && ops[k].Kind == powerfs.OpMark {
			continue // the same state as after the marks that follow
		}
		if fileOps%every != 0 && k < len(ops) {
			continue
		}
		points++
		modes := []powerfs.CutMode{powerfs.CutDrop, powerfs.CutTorn}
		if points%8 == 0 {
			modes = append(modes, powerfs.CutNone)
		}
		for _, mode := range modes {
			d := filepath.Join(scratch, "p")
			if err := os.RemoveAll(d); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(k), uint64(mode)))
			if err := replay.Materialise(d, mode, rng); err != nil {
				t.Fatal(err)
			}
			res, bad := checkCrashPoint(filepath.Join(d, "outbox"), fsync, e, stored)
			if bad != "" {
				for i := max(0, k-40); i < k; i++ {
					t.Logf("op %d: %v", i, ops[i]) // what led there
				}
				if st, _, _, err := loadState(filepath.Join(d, "outbox", stateName)); err == nil {
					t.Logf("ack log after the cut: floor %d, acked %v", st.floor, st.acked.spans())
				}
				for _, l := range strings.Split(wlog.String(), "\n") {
					if l != "" && !strings.Contains(l, "level=INFO") {
						t.Logf("workload log: %s", l)
					}
				}
				t.Fatalf("crash point %d of %d (after %v), cut %v: %s", k, len(ops), opAt(ops, k-1), mode, bad)
			}
			counts[mode]++
			cutsChecked++
			if res.dups > maxDups {
				maxDups, dupAt = res.dups, fmt.Sprintf("point %d, cut %v, %d acked, %d returned", k, mode, len(e.acked), res.returned)
			}
		}
	}
	if len(stored) != 200 || len(e.durable) != 200 {
		t.Errorf("workload stored %d messages and %d were marked durable; want 200", len(stored), len(e.durable))
	}
	if syncs < 60 {
		t.Errorf("only %d fsyncs in the workload: the enumeration covers too little", syncs)
	}
	t.Logf("%d file operations (%d fsync/fdatasync/dir fsync), %d crash points, %d cuts checked (drop %d, torn %d, none %d) in %s",
		fileOps, syncs, points, cutsChecked, counts[powerfs.CutDrop], counts[powerfs.CutTorn], counts[powerfs.CutNone], time.Since(start).Round(time.Millisecond))
	t.Logf("most acked messages returned again after a cut: %d (%s)", maxDups, dupAt)
}

func opAt(ops []powerfs.Op, i int) string {
	if i < 0 {
		return "nothing"
	}
	return fmt.Sprintf("op %d: %v", i, ops[i])
}
