package outbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond every few milliseconds for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCommitInterval: with a commit interval and nobody reading, messages
// queued one by one share commits; Close, a half-full queue and a waiting
// reader each commit at once instead of waiting out the interval.
func TestCommitInterval(t *testing.T) {
	cases := []struct {
		name     string
		interval time.Duration
		n        int
		payload  int
		reader   bool // a Next waits before the appends
		close    bool // Close right after queueing
		maxSyncs uint64
	}{
		// The first commit after idle is at once, the other 49 wait for
		// the next one.
		{"50 messages share two commits", 300 * time.Millisecond, 50, 100, false, false, 2},
		// An hour-long interval: the first at once, the other 19 only by Close.
		{"close commits at once", time.Hour, 20, 100, false, true, 4},
		{"waiting reader commits at once", time.Hour, 1, 100, true, false, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := openT(t, Options{Dir: t.TempDir(), CommitInterval: c.interval})
			var readErr error
			var got Message
			var rwg sync.WaitGroup
			if c.reader {
				waiting := make(chan struct{}, 1)
				o.testOnWait = func() {
					select {
					case waiting <- struct{}{}:
					default:
					}
				}
				rwg.Add(1)
				go func() {
					defer rwg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					got, readErr = o.Next(ctx)
				}()
				<-waiting
			}
			before := o.Stats().Fsyncs
			var wg sync.WaitGroup
			wg.Add(c.n)
			m := Message{Topic: "t", QoS: 1, Payload: make([]byte, c.payload)}
			for i := 0; i < c.n; i++ {
				if err := o.AppendAsync(context.Background(), m, func(_ uint64, err error) {
					if err != nil {
						t.Error(err)
					}
					wg.Done()
				}); err != nil {
					t.Fatal(err)
				}
			}
			if c.close {
				if err := o.Close(); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("appends not committed after 10 s (interval %v)", c.interval)
			}
			rwg.Wait()
			if readErr != nil || (c.reader && got.Seq != 1) {
				t.Fatalf("reader: %+v %v", got, readErr)
			}
			syncs := o.Stats().Fsyncs - before
			if syncs == 0 || syncs > c.maxSyncs {
				t.Fatalf("%d syncs for %d messages, want 1..%d", syncs, c.n, c.maxSyncs)
			}
		})
	}
}

// TestCommitIntervalHalfFullQueue: a queue that reaches commitEarlyBytes
// (or half of its 1 MiB limit, if that is less) is committed at once, not
// after the interval: its whole pages (the partly filled last page waits).
func TestCommitIntervalHalfFullQueue(t *testing.T) {
	o := openT(t, Options{Dir: t.TempDir(), CommitInterval: time.Hour})
	m := Message{Topic: "t", QoS: 1, Payload: make([]byte, 1<<10)}
	durable := func() uint64 {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.durableNext - 1
	}
	queued := func() int {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.qbuf)
	}
	early := o.commitEarly()
	// The first pass after idle goes at once: let it take one message
	// (held in the tail page, which waits for the interval).
	if err := o.AppendAsync(context.Background(), m, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first pass", func() bool { return queued() == 0 })
	n := 1
	for queued()+2*recordSize(&m) < early { // stay just under the threshold
		if err := o.AppendAsync(context.Background(), m, nil); err != nil {
			t.Fatal(err)
		}
		n++
	}
	time.Sleep(100 * time.Millisecond) // no event to await: asserting an absence
	if d := durable(); d != 0 {
		t.Fatalf("durable up to %d before the queue reached %d bytes, want 0", d, early)
	}
	for queued() > 0 && queued() < early {
		if err := o.AppendAsync(context.Background(), m, nil); err != nil {
			t.Fatal(err)
		}
		n++
	}
	perPage := uint64(pageSize / recordSize(&m))
	waitFor(t, 10*time.Second, fmt.Sprintf("the early commit (n=%d)", n), func() bool { return durable()+perPage >= uint64(n) })
}

// TestAckLogSyncedWhileAcksChange: acknowledgements reach stable storage
// within about ackSyncInterval, not only at compaction or Close, so a power
// cut resends at most that long of deliveries.
func TestAckLogSyncedWhileAcksChange(t *testing.T) {
	o := openT(t, Options{Dir: t.TempDir()})
	for round := 0; round < 2; round++ {
		// Round 0: the first acks after a quiet time are synced with their
		// write; round 1, within ackSyncInterval of that, by the timer.
		appendN(t, o, 10*round, 10)
		before := o.Stats().Fsyncs
		for i := 0; i < 10; i++ {
			o.Ack(nextT(t, o).Seq)
		}
		waitFor(t, 5*ackSyncInterval, "the ack log sync", func() bool { return o.Stats().Fsyncs > before })
	}
	// Nothing new: no further syncs.
	after := o.Stats().Fsyncs
	if err := o.flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * ackSyncInterval) // no event to await: asserting an absence
	if got := o.Stats().Fsyncs; got != after {
		t.Fatalf("%d syncs with no acks", got-after)
	}
}

// TestIntervalSyncErrorReported: in FsyncInterval mode the periodic sync's
// error latches the failure (logged at Error, new messages refused)
// instead of being thrown away.
func TestIntervalSyncErrorReported(t *testing.T) {
	var lb logBuf
	o := openT(t, Options{Dir: t.TempDir(), Fsync: FsyncInterval, FsyncInterval: 20 * time.Millisecond, Logger: lb.logger()})
	boom := errors.New("injected EIO")
	syncData = func(*os.File) error { return boom }
	defer func() { syncData = fdatasync }()
	if _, err := o.Append(context.Background(), msgFor(1)); err != nil {
		t.Fatal(err) // reported after the write, before the sync
	}
	waitFor(t, 5*time.Second, "the failure", func() bool {
		_, err := o.Append(context.Background(), msgFor(2))
		return errors.Is(err, boom)
	})
	if l := lb.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "injected EIO") || !strings.Contains(l, "power cut") {
		t.Fatalf("log:\n%s", l)
	}
}

// TestFilesArePrivate: the outbox directory is 0700 and its files 0600,
// with a permissive umask and over a directory an older version left
// 0755 with 0644 files.
func TestFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "outbox")
	o := openT(t, Options{Dir: dir})
	appendN(t, o, 0, 3)
	o.Ack(nextT(t, o).Seq)
	o.Close()
	check := func(when string) {
		t.Helper()
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: dir mode %v, %v", when, fi.Mode().Perm(), err)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) < 3 {
			t.Fatalf("%s: %d files", when, len(ents))
		}
		for _, e := range ents {
			fi, _ := e.Info()
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %s has mode %v", when, e.Name(), fi.Mode().Perm())
			}
		}
	}
	check("created")
	os.Chmod(dir, 0o755)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.Chmod(filepath.Join(dir, e.Name()), 0o644)
	}
	o = openT(t, Options{Dir: dir})
	appendN(t, o, 3, 1)
	o.Close()
	check("reopened")
}

// TestRecycledSegments: acknowledged segments become spares (at most
// maxSpares), new segments reuse their files, and what the old contents
// leave after the new records is neither read nor taken for a torn tail,
// also after a reopen.
func TestRecycledSegments(t *testing.T) {
	dir := t.TempDir()
	var lb logBuf
	opts := Options{Dir: dir, SegmentBytes: 4096, Logger: lb.logger()}
	o := openT(t, opts)
	// About 87 to a segment: enough sealed segments for maxSpares spares.
	total := (maxSpares + 2) * 100
	appendN(t, o, 0, total)
	for i := 0; i < total; i++ {
		o.Ack(nextT(t, o).Seq)
	}
	if err := o.flush(); err != nil {
		t.Fatal(err)
	}
	spares, err := listSpares(dir)
	if err != nil || len(spares) != maxSpares {
		t.Fatalf("spares %v (%v), want %d", spares, err, maxSpares)
	}
	var old []os.FileInfo
	for _, s := range spares {
		fi, err := os.Stat(s)
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, fi)
	}
	// Short records: the new contents end before the old ones do.
	short := func(i int) Message { return Message{Topic: "r", QoS: 1, Payload: []byte(fmt.Sprintf("new-%d", i))} }
	isSpare := func(first uint64) bool {
		fi, err := os.Stat(o.segPath(first))
		if err != nil {
			t.Fatal(err)
		}
		for _, of := range old {
			if os.SameFile(fi, of) {
				return true
			}
		}
		return false
	}
	// Append until the last spare is the active segment and holds 20 of
	// them: its tail is then the old contents.
	n, inLast := 0, 0
	for inLast < 20 {
		if n > 400*(maxSpares+1) {
			t.Fatal("the spares were not reused")
		}
		if _, err := o.Append(context.Background(), short(n)); err != nil {
			t.Fatal(err)
		}
		n++
		segs := segFiles(t, dir)
		reused := 0
		for _, f := range segs {
			if isSpare(f) {
				reused++
			}
		}
		if reused == maxSpares && isSpare(segs[len(segs)-1]) {
			inLast++
		}
	}
	check := func(o *Outbox) {
		t.Helper()
		for i := 0; i < n; i++ {
			if m := nextT(t, o); m.Seq != uint64(total+1+i) || string(m.Payload) != fmt.Sprintf("new-%d", i) {
				t.Fatalf("got seq %d %q, want %d", m.Seq, m.Payload, total+1+i)
			}
		}
		expectNoNext(t, o)
		if st := o.Stats(); st.TailCutBytes != 0 || st.SkippedBytes != 0 || st.Dropped["corrupt"] != 0 {
			t.Fatalf("stats %+v", st)
		}
	}
	check(o)
	o.Close()
	o = openT(t, opts)
	check(o)
	if l := lb.String(); strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
		t.Fatalf("recycled segments were taken for damage:\n%s", l)
	}
}

// TestIdleCommitterHasNoAckTimer: once every ack is written and the ack
// log synced, the committer sleeps with no timer (an idle gateway has no
// periodic wake-up there), and an ack that then comes kicks it: it still
// reaches the ack log, where nothing but that kick could make it go.
func TestIdleCommitterHasNoAckTimer(t *testing.T) {
	dir := t.TempDir()
	o := openT(t, Options{Dir: dir})
	appendN(t, o, 0, 4)
	o.Ack(nextT(t, o).Seq)
	idle := func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.ackIdle
	}
	waitFor(t, 10*ackSyncInterval, "the committer idle with no ack timer", idle)
	fi, err := os.Stat(filepath.Join(dir, stateName))
	if err != nil {
		t.Fatal(err)
	}
	o.Ack(nextT(t, o).Seq)
	waitFor(t, 10*time.Second, "the kicked ack in the ack log", func() bool {
		now, err := os.Stat(filepath.Join(dir, stateName))
		return err == nil && now.Size() > fi.Size()
	})
	waitFor(t, 10*ackSyncInterval, "the committer idle again", idle)
}
