package outbox

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	policyMax = 64 << 10 // 64 KiB: segments of 8 KiB
	policyN   = 2000     // ~300 KiB offered
)

// drainAll reads every message Next has, acking each, and returns the seqs.
func drainAll(t *testing.T, o *Outbox) []uint64 {
	t.Helper()
	var seqs []uint64
	for o.Stats().Messages > 0 {
		m := nextT(t, o)
		seqs = append(seqs, m.Seq)
		if err := o.Ack(m.Seq); err != nil {
			t.Fatal(err)
		}
	}
	return seqs
}

func assertIncreasing(t *testing.T, seqs []uint64) {
	t.Helper()
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("out of order: %d after %d", seqs[i], seqs[i-1])
		}
	}
}

func TestFullDropNewest(t *testing.T) {
	var lb logBuf
	o := openT(t, Options{Dir: t.TempDir(), MaxBytes: policyMax, Full: DropNewest, Logger: lb.logger()})
	var accepted []uint64
	refused := 0
	for i := 0; i < policyN; i += 50 {
		for _, r := range appendAsyncN(t, o, i, 50) {
			switch {
			case errors.Is(r.err, ErrFull):
				refused++
			case r.err != nil:
				t.Fatal(r.err)
			default:
				accepted = append(accepted, r.seq)
			}
		}
	}
	st := o.Stats()
	if refused == 0 || st.Dropped["full_newest"] != uint64(refused) || !st.Full {
		t.Fatalf("refused %d, stats %+v", refused, st)
	}
	if st.Bytes > policyMax {
		t.Fatalf("Bytes %d over MaxBytes %d", st.Bytes, policyMax)
	}
	// The accepted ones are the first ones, contiguous, delivered in order.
	for i, s := range accepted {
		if s != uint64(i+1) {
			t.Fatalf("accepted seq %d at %d", s, i)
		}
	}
	got := drainAll(t, o)
	if len(got) != len(accepted) {
		t.Fatalf("delivered %d, accepted %d", len(got), len(accepted))
	}
	if n := strings.Count(lb.String(), "outbox: dropping messages"); n != 1 {
		t.Fatalf("drop logged %d times, want once per episode:\n%s", n, lb.String())
	}
	// Acking freed the space: the episode ended and appends work again.
	if err := o.flush(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lb.String(), "drop episode ended") || o.Stats().Full {
		t.Fatalf("episode end not logged:\n%s", lb.String())
	}
	if _, err := o.Append(context.Background(), msgFor(1)); err != nil {
		t.Fatal(err)
	}
}

func TestFullDropOldest(t *testing.T) {
	var lb logBuf
	o := openT(t, Options{Dir: t.TempDir(), MaxBytes: policyMax, Full: DropOldest, Logger: lb.logger()})
	for i := 0; i < policyN; i += 50 {
		for k, r := range appendAsyncN(t, o, i, 50) {
			if r.err != nil || r.seq != uint64(i+k+1) {
				t.Fatalf("append %d: seq %d err %v", i+k, r.seq, r.err)
			}
		}
		if b := o.Stats().Bytes; b > policyMax+policyMax/8 {
			t.Fatalf("Bytes %d over MaxBytes %d + one segment", b, policyMax)
		}
	}
	st := o.Stats()
	got := drainAll(t, o)
	assertIncreasing(t, got)
	// The newest survive, contiguous up to the last one.
	if got[len(got)-1] != policyN || uint64(len(got)) != policyN-got[0]+1 {
		t.Fatalf("delivered %d..%d (%d), want a contiguous tail ending at %d", got[0], got[len(got)-1], len(got), policyN)
	}
	if st.Dropped["full_oldest"] != got[0]-1 || st.Dropped["full_oldest"] == 0 {
		t.Fatalf("dropped %d, first delivered %d", st.Dropped["full_oldest"], got[0])
	}
	if n := strings.Count(lb.String(), "outbox: dropping messages"); n != 1 {
		t.Fatalf("drop logged %d times:\n%s", n, lb.String())
	}
}

func TestFullBlock(t *testing.T) {
	var lb logBuf
	o := openT(t, Options{Dir: t.TempDir(), MaxBytes: policyMax, Full: Block, Logger: lb.logger()})
	var wg sync.WaitGroup
	var prodErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < policyN; i++ {
			if _, err := o.Append(context.Background(), msgFor(i)); err != nil {
				prodErr = err
				return
			}
		}
	}()
	// The producer must stop at the limit; only then do we start consuming.
	waitUntil(t, func() bool { return o.Stats().Blocked > 0 })
	if st := o.Stats(); st.Appended >= policyN || !st.Full || st.Bytes > policyMax {
		t.Fatalf("not blocked at the limit: %+v", st)
	}
	// The largest message (payloadFor(49)): one smaller than the blocked
	// one may still fit.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	err := o.AppendAsync(ctx, msgFor(49), nil)
	cancel()
	if !errors.Is(err, ErrFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked AppendAsync with an ending ctx: %v", err)
	}
	var got []uint64
	for len(got) < policyN {
		m := nextT(t, o)
		if !bytes.Equal(m.Payload, payloadFor(len(got))) {
			t.Fatalf("seq %d payload %q", m.Seq, m.Payload)
		}
		got = append(got, m.Seq)
		o.Ack(m.Seq)
	}
	wg.Wait()
	if prodErr != nil {
		t.Fatal(prodErr)
	}
	assertIncreasing(t, got)
	st := o.Stats()
	for k, v := range st.Dropped {
		if v != 0 {
			t.Fatalf("dropped %d (%s) under Block", v, k)
		}
	}
	if !strings.Contains(lb.String(), "reason=full_block") {
		t.Fatalf("block not logged:\n%s", lb.String())
	}
}

// waitUntil polls a condition another goroutine brings about (a producer
// reaching a blocking point has no event to await), with a bounded deadline.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestMaxAgeExpiry(t *testing.T) {
	var lb logBuf
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	o := openT(t, Options{Dir: t.TempDir(), MaxAge: time.Hour, Now: clock, Logger: lb.logger()})
	appendN(t, o, 0, 10)
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if age := o.Stats().OldestAge; age != 2*time.Hour {
		t.Fatalf("OldestAge %v, want 2h", age)
	}
	appendN(t, o, 10, 5)
	for i := 11; i <= 15; i++ {
		if m := nextT(t, o); m.Seq != uint64(i) {
			t.Fatalf("got %d, want %d", m.Seq, i)
		}
	}
	st := o.Stats()
	if st.Dropped["expired"] != 10 || st.Messages != 5 {
		t.Fatalf("stats %+v", st)
	}
	if strings.Count(lb.String(), "reason=expired") != 2 { // start (Warn) and end (Info)
		t.Fatalf("expiry episode logging:\n%s", lb.String())
	}
}

func TestRingDropsOldest(t *testing.T) {
	r := NewRing(10 * (64 + 10))
	var lb logBuf
	r.SetLogger(lb.logger())
	dropped := 0
	for i := 0; i < 25; i++ {
		dropped += r.Push(Message{Topic: "q0", Payload: []byte{'0', byte('0' + i%10), 'x', 'x', 'x', 'x', 'x', 'x'}})
	}
	if dropped != 15 || r.Dropped() != 15 || r.Len() != 10 {
		t.Fatalf("dropped %d/%d, len %d", dropped, r.Dropped(), r.Len())
	}
	for i := 15; i < 25; i++ {
		m, err := r.Pop(context.Background())
		if err != nil || m.Payload[1] != byte('0'+i%10) {
			t.Fatalf("pop %d: %q %v", i, m.Payload, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := r.Pop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pop on empty ring: %v", err)
	}
	if r.Push(Message{Payload: make([]byte, 2000)}) != 1 || r.Dropped() != 16 {
		t.Fatal("oversized message not dropped and counted")
	}
	if strings.Count(lb.String(), "dropping messages") != 2 || !strings.Contains(lb.String(), "episode ended") {
		t.Fatalf("ring episode logging:\n%s", lb.String())
	}
}

func TestMarkReleasedAndRecentOrigin(t *testing.T) {
	dir := t.TempDir()
	o := openT(t, Options{Dir: dir})
	seq, err := o.Append(context.Background(), Message{Topic: "q2", QoS: 2, Payload: []byte("x"), Origin: "local-1", OriginPID: 9})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, o, 0, 1) // a QoS 1 message: not tracked
	if s, ok := o.RecentOrigin("local-1", 9); !ok || s != seq {
		t.Fatalf("RecentOrigin = %d %v", s, ok)
	}
	if _, ok := o.RecentOrigin("local-1", 10); ok {
		t.Fatal("RecentOrigin hit for another packet id")
	}
	if m := nextT(t, o); m.Released {
		t.Fatal("Released before MarkReleased")
	}
	done := make(chan error, 1)
	o.MarkReleased(seq, func(err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("MarkReleased never completed")
	}
	o.Close()
	o = openT(t, Options{Dir: dir})
	if m := nextT(t, o); m.Seq != seq || !m.Released {
		t.Fatalf("after reopen: %+v, want seq %d released", m, seq)
	}
	if s, ok := o.RecentOrigin("local-1", 9); !ok || s != seq {
		t.Fatalf("RecentOrigin after reopen = %d %v", s, ok)
	}
	if st := o.Stats(); st.DuplicatesAvoided != 1 {
		t.Fatalf("DuplicatesAvoided %d", st.DuplicatesAvoided)
	}
	o.Ack(seq)
	o.Rewind()
	if m := nextT(t, o); m.Seq != seq+1 {
		t.Fatalf("after PUBCOMP ack got %d", m.Seq)
	}
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want FsyncMode
		ok   bool
	}{{"always", FsyncAlways, true}, {"batch", FsyncBatch, true}, {"interval", FsyncInterval, true}, {"sometimes", 0, false}} {
		got, err := ParseFsyncMode(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseFsyncMode(%q) = %v, %v", c.in, got, err)
		}
		if c.ok && got.String() != c.in {
			t.Errorf("String() = %q", got.String())
		}
	}
	for _, c := range []struct {
		in   string
		want FullPolicy
		ok   bool
	}{{"drop_oldest", DropOldest, true}, {"drop_newest", DropNewest, true}, {"block", Block, true}, {"drop", 0, false}} {
		got, err := ParseFullPolicy(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseFullPolicy(%q) = %v, %v", c.in, got, err)
		}
		if c.ok && got.String() != c.in {
			t.Errorf("String() = %q", got.String())
		}
	}
}

func TestSecondOpenOfSameDirFails(t *testing.T) {
	dir := t.TempDir()
	openT(t, Options{Dir: dir})
	if _, err := Open(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open: %v", err)
	}
}
