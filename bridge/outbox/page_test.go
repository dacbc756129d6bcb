package outbox

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// readSeg reads the whole active segment file of o.
func readSeg(t *testing.T, o *Outbox) []byte {
	t.Helper()
	o.mu.Lock()
	path := o.segPath(o.segs[len(o.segs)-1].first)
	o.mu.Unlock()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCommitsWriteWholePages: under CommitInterval a commit never rewrites
// a page that holds acknowledged records. A lone message waits for its
// page until the interval, then the page is written padded with zeros; the
// next message starts the next page, and the first page stays byte for
// byte what was acknowledged. Records never cross a page boundary, and
// everything reads back in order, also after a reopen.
func TestCommitsWriteWholePages(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, CommitInterval: 50 * time.Millisecond, SegmentBytes: 1 << 20}
	o := openT(t, opts)
	ctx := context.Background()
	t0 := time.Now()
	if _, err := o.Append(ctx, msgFor(0)); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(t0); waited < opts.CommitInterval {
		t.Fatalf("a lone message was durable after %v, before its page filled or the interval (%v) passed", waited, opts.CommitInterval)
	}
	o.mu.Lock()
	off := o.durableOff
	o.mu.Unlock()
	if off != pageSize {
		t.Fatalf("durable offset %d after one padded commit, want %d (one whole page)", off, pageSize)
	}
	page0 := readSeg(t, o)[:pageSize]
	rec := int(recordSpans(t, o.active.Name())[0].end) - segHeaderSize
	if !bytes.Equal(page0[segHeaderSize+rec:], make([]byte, pageSize-segHeaderSize-rec)) {
		t.Fatal("the rest of the first page is not zero padding")
	}
	// Enough messages for several pages, appended at once: whole pages go
	// at once, the last partial one after the interval.
	n := 200
	res := appendAsyncN(t, o, 1, n)
	for _, r := range res {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	b := readSeg(t, o)
	if !bytes.Equal(b[:pageSize], page0) {
		t.Fatal("a later commit rewrote the first page, which held an acknowledged record")
	}
	for _, sp := range recordSpans(t, o.active.Name()) {
		if sp.off/pageSize != (sp.end-1)/pageSize {
			t.Fatalf("record seq %d at [%d, %d) crosses a page boundary", sp.seq, sp.off, sp.end)
		}
	}
	o.mu.Lock()
	off = o.durableOff
	o.mu.Unlock()
	if off%pageSize != 0 {
		t.Fatalf("durable offset %d is not on a page boundary", off)
	}
	for i := 0; i <= n; i++ {
		if m := nextT(t, o); m.Seq != uint64(i+1) || !bytes.Equal(m.Payload, payloadFor(i)) {
			t.Fatalf("read seq %d, want %d", m.Seq, i+1)
		}
	}
	o.Close()
	o2 := openT(t, opts)
	if st := o2.Stats(); st.TailCutBytes != 0 || st.Messages != uint64(n+1) {
		t.Fatalf("after reopen: %d messages, %d tail bytes cut; want %d, 0", st.Messages, st.TailCutBytes, n+1)
	}
	for i := 0; i <= n; i++ {
		if m := nextT(t, o2); m.Seq != uint64(i+1) {
			t.Fatalf("after reopen: read seq %d, want %d", m.Seq, i+1)
		}
	}
}

// TestZeroedRecordIsDamageNotPadding: zeros where a record should start,
// with records after them in the same page, are damage (counted, logged),
// not padding: the records after them in that page are lost with it (their
// deltas need it) and counted, and the next page is read.
func TestZeroedRecordIsDamageNotPadding(t *testing.T) {
	const n = 150
	dir := t.TempDir()
	o := openT(t, Options{Dir: dir})
	appendN(t, o, 0, n)
	o.Close()
	path := o.segPath(1)
	spans := recordSpans(t, path)
	victim := spans[3]
	lost := map[uint64]bool{}
	for _, sp := range spans[3:] {
		if sp.off/pageSize != victim.off/pageSize {
			break
		}
		lost[sp.seq] = true
	}
	if len(spans) != n || len(lost) < 2 || len(lost) >= n-3 {
		t.Fatalf("fixture: %d records, %d after the victim in its page; want %d, and records after them on the next page", len(spans), len(lost), n)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, victim.end-victim.off), victim.off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var lb logBuf
	o2 := openT(t, Options{Dir: dir, Logger: lb.logger()})
	for i := 0; i < n; i++ {
		if lost[uint64(i+1)] {
			continue
		}
		if m := nextT(t, o2); m.Seq != uint64(i+1) {
			t.Fatalf("read seq %d, want %d", m.Seq, i+1)
		}
	}
	expectNoNext(t, o2)
	if st := o2.Stats(); st.Dropped["corrupt"] != uint64(len(lost)) || st.TailCutBytes != 0 {
		t.Fatalf("dropped corrupt %d, tail cut %d; want %d (the zeroed record and the rest of its page), 0", st.Dropped["corrupt"], st.TailCutBytes, len(lost))
	}
	if l := lb.String(); !strings.Contains(l, "level=ERROR") {
		t.Fatalf("the damage was not logged at Error:\n%s", l)
	}
}

// TestPrefillOnce: a new outbox under CommitInterval writes its first
// segment and maxSpares spares full of zeros at creation, and only then:
// reopening it, or one without CommitInterval, prefills nothing.
func TestPrefillOnce(t *testing.T) {
	for _, c := range []struct {
		name     string
		interval time.Duration
		spares   int
	}{{"commit interval", 100 * time.Millisecond, maxSpares}, {"no commit interval", 0, 0}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, CommitInterval: c.interval, SegmentBytes: 64 << 10}
			o := openT(t, opts)
			sp, err := listSpares(dir)
			if err != nil || len(sp) != c.spares {
				t.Fatalf("%d spares after creation (%v), want %d", len(sp), err, c.spares)
			}
			for _, p := range sp {
				if b, err := os.ReadFile(p); err != nil || int64(len(b)) != opts.SegmentBytes || !bytes.Equal(b, make([]byte, len(b))) {
					t.Fatalf("spare %s: %d bytes (%v), want %d zeros", p, len(b), err, opts.SegmentBytes)
				}
			}
			if c.spares > 0 {
				seg := readSeg(t, o)
				if int64(len(seg)) != opts.SegmentBytes || !bytes.Equal(seg[segHeaderSize:], make([]byte, len(seg)-segHeaderSize)) {
					t.Fatalf("first segment: %d bytes, want %d: its header and zeros", len(seg), opts.SegmentBytes)
				}
			}
			appendN(t, o, 0, 3)
			o.Close()
			// Reopened, the spares used up: nothing is written again.
			for _, p := range sp {
				os.Remove(p)
			}
			openT(t, opts).Close()
			if sp, _ := listSpares(dir); len(sp) != 0 {
				t.Fatalf("%d spares made at a reopen, want 0", len(sp))
			}
		})
	}
}

// TestLastNonZeroIn: the page-at-a-time zero scan finds the last non-zero
// byte wherever it is: first or last byte, a page boundary, none at all.
func TestLastNonZeroIn(t *testing.T) {
	for _, tc := range []struct {
		size, at int // at < 0: all zeros
	}{
		{0, -1}, {1, -1}, {1, 0}, {pageSize, -1}, {pageSize, 0}, {pageSize, pageSize - 1},
		{3*pageSize + 17, -1}, {3*pageSize + 17, 3 * pageSize}, {3*pageSize + 17, 3*pageSize - 1},
		{3*pageSize + 17, 3*pageSize + 16}, {3*pageSize + 17, 5},
	} {
		b := make([]byte, tc.size)
		if tc.at >= 0 {
			b[tc.at] = 0x80
			if tc.at > 0 {
				b[0] = 1 // an earlier non-zero byte must not win
			}
		}
		if got := lastNonZeroIn(b); got != tc.at {
			t.Errorf("size %d, non-zero at %d: got %d", tc.size, tc.at, got)
		}
		if got := allZero(b); got != (tc.at < 0) {
			t.Errorf("size %d, non-zero at %d: allZero = %v", tc.size, tc.at, got)
		}
	}
}
