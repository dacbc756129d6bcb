package outbox

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyDir copies the regular files of src into a new temp dir.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst, err := os.MkdirTemp(t.TempDir(), "copy")
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// tornFixture builds a closed outbox of n messages over several segments and
// returns its dir, the last segment's path and the byte range of its last
// record.
func tornFixture(t *testing.T, n int) (dir, last string, start, end int64) {
	t.Helper()
	dir = t.TempDir()
	o := openT(t, Options{Dir: dir, SegmentBytes: 4096})
	appendN(t, o, 0, n-1)
	segs := segFiles(t, dir)
	last = o.segPath(segs[len(segs)-1])
	start = fileSize(t, last)
	if _, err := o.Append(context.Background(), Message{Topic: "readings/last", QoS: 2, Origin: "c1", OriginPID: 7, Payload: []byte("the last record, torn in every way")}); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if got := segFiles(t, dir); got[len(got)-1] != segs[len(segs)-1] {
		t.Fatalf("the last record started a new segment; pick another n")
	}
	end = fileSize(t, last)
	if len(segFiles(t, dir)) < 3 {
		t.Fatalf("fixture has %d segments, want several", len(segFiles(t, dir)))
	}
	return dir, last, start, end
}

// checkRecovered opens a damaged copy and asserts it was cut back to the
// n-1 whole records, logged with the right offset and size, and that
// appending and reopening work.
func checkRecovered(t *testing.T, dir string, n int, start, cut int64) {
	t.Helper()
	var lb logBuf
	o, err := Open(Options{Dir: dir, SegmentBytes: 4096, Logger: lb.logger()})
	if err != nil {
		t.Fatalf("Open of a torn log failed: %v", err)
	}
	defer o.Close()
	if got := o.Stats().TailCutBytes; got != uint64(cut) {
		t.Fatalf("TailCutBytes = %d, want %d", got, cut)
	}
	if cut > 0 {
		wantLog := fmt.Sprintf("offset=%d bytes=%d", start, cut)
		if !strings.Contains(lb.String(), wantLog) || !strings.Contains(lb.String(), "level=WARN") {
			t.Fatalf("log does not report the cut (%s):\n%s", wantLog, lb.String())
		}
	}
	for i := 0; i < n-1; i++ {
		m := nextT(t, o)
		if m.Seq != uint64(i+1) || !bytes.Equal(m.Payload, payloadFor(i)) {
			t.Fatalf("record %d: got seq %d payload %q", i+1, m.Seq, m.Payload)
		}
	}
	expectNoNext(t, o)
	seq, err := o.Append(context.Background(), Message{Topic: "after", QoS: 1, Payload: []byte("after the cut")})
	if err != nil || seq != uint64(n) {
		t.Fatalf("append after recovery: seq %d err %v, want %d", seq, err, n)
	}
	if m := nextT(t, o); m.Seq != uint64(n) || string(m.Payload) != "after the cut" {
		t.Fatalf("appended after the cut: got %+v", m)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o2, err := Open(Options{Dir: dir, SegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	if st := o2.Stats(); st.TailCutBytes != 0 || st.Messages != uint64(n) {
		t.Fatalf("second reopen: %+v, want a clean log of %d", st, n)
	}
}

func TestTornTailTruncatedAtEveryOffset(t *testing.T) {
	const n = 200
	dir, last, start, end := tornFixture(t, n)
	for off := start; off < end; off++ {
		t.Run(fmt.Sprint(off-start), func(t *testing.T) {
			d := copyDir(t, dir)
			if err := os.Truncate(filepath.Join(d, filepath.Base(last)), off); err != nil {
				t.Fatal(err)
			}
			checkRecovered(t, d, n, start, off-start)
		})
	}
}

func TestTornTailFlippedByteAtEveryOffset(t *testing.T) {
	const n = 200
	dir, last, start, end := tornFixture(t, n)
	for off := start; off < end; off++ {
		mask := []byte{0x01, 0x80, 0xff, 0x10}[off%4] // single bits and a whole byte
		t.Run(fmt.Sprintf("%d/%#x", off-start, mask), func(t *testing.T) {
			d := copyDir(t, dir)
			p := filepath.Join(d, filepath.Base(last))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[off] ^= mask
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			checkRecovered(t, d, n, start, end-start)
		})
	}
}

func TestTornSegmentHeader(t *testing.T) {
	dir := t.TempDir()
	o := openT(t, Options{Dir: dir})
	appendN(t, o, 0, 3)
	o.Close()
	// A crash right after creating the next segment, before its header
	// reached the disk.
	p := filepath.Join(dir, segName(4))
	if err := os.WriteFile(p, []byte("EGW"), 0o644); err != nil {
		t.Fatal(err)
	}
	o = openT(t, Options{Dir: dir})
	if st := o.Stats(); st.TailCutBytes != 3 || st.Messages != 3 {
		t.Fatalf("stats %+v", st)
	}
	if seq, err := o.Append(context.Background(), msgFor(3)); err != nil || seq != 4 {
		t.Fatalf("append: %d %v", seq, err)
	}
	for i := 1; i <= 4; i++ {
		if m := nextT(t, o); m.Seq != uint64(i) {
			t.Fatalf("got %d want %d", m.Seq, i)
		}
	}
}

func TestTornAckLog(t *testing.T) {
	dir := t.TempDir()
	o := openT(t, Options{Dir: dir})
	appendN(t, o, 0, 10)
	for s := uint64(1); s <= 5; s++ {
		o.Ack(s)
	}
	o.Close() // compacts: header + floor record
	p := filepath.Join(dir, stateName)
	good := fileSize(t, p)
	o = openT(t, Options{Dir: dir})
	o.Ack(7)
	o.Close()
	for off := good; off < fileSize(t, p); off++ {
		d := copyDir(t, dir)
		if err := os.Truncate(filepath.Join(d, stateName), off); err != nil {
			t.Fatal(err)
		}
		o := openT(t, Options{Dir: d})
		if m := nextT(t, o); m.Seq != 6 {
			t.Fatalf("cut at %d: first unacked %d, want 6", off, m.Seq)
		}
		if m := nextT(t, o); m.Seq != 7 && off > good {
			// The ack of 7 may be lost with the torn tail: a resend, never a loss.
			t.Fatalf("cut at %d: second %d", off, m.Seq)
		}
		o.Close()
	}
}

// recordSpan is where one record lies in a segment file.
type recordSpan struct {
	off, end int64
	seq      uint64
}

// recordSpans lists the whole records of a segment file in order.
func recordSpans(t *testing.T, path string) []recordSpan {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(segHeaderSize, 0); err != nil {
		t.Fatal(err)
	}
	rr := recordReader{r: bufio.NewReader(f), ver: segVersion, off: segHeaderSize}
	var out []recordSpan
	for {
		body, err := rr.nextBody()
		if err != nil {
			return out // the end, or the preallocated zeros after it
		}
		// Where it starts: after any padding nextBody skipped.
		off := rr.off - int64(uvarintLen(uint64(len(body)))+4+len(body))
		out = append(out, recordSpan{off, rr.off, rr.v.seq})
	}
}

// TestDamageCostsTheRestOfItsPage flips bytes in a sealed segment's
// record, in a sealed segment's first record and header, in a record in
// the middle of the last segment and in the last segment's header: the
// damaged record and the records after it in its page are missing (their
// deltas cannot be read without it), none for a header, and every other
// record is read; the loss is counted and logged at Error, and no torn
// tail is reported.
func TestDamageCostsTheRestOfItsPage(t *testing.T) {
	const n = 780
	const segBytes = 2 * pageSize
	cases := []struct {
		name   string
		seg    func(segs []uint64) uint64 // which segment
		record int                        // which record in it (-1: the header)
	}{
		{"sealed segment record", func(s []uint64) uint64 { return s[1] }, 7},
		{"sealed segment first record", func(s []uint64) uint64 { return s[1] }, 0},
		{"sealed segment header", func(s []uint64) uint64 { return s[1] }, -1},
		{"last segment middle record", func(s []uint64) uint64 { return s[len(s)-1] }, 3},
		{"last segment header", func(s []uint64) uint64 { return s[len(s)-1] }, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			o := openT(t, Options{Dir: dir, SegmentBytes: segBytes})
			appendN(t, o, 0, n)
			o.Close()
			segs := segFiles(t, dir)
			victim := filepath.Join(dir, segName(c.seg(segs)))
			spans := recordSpans(t, victim)
			if len(spans) < 8 || spans[len(spans)-1].off < pageSize {
				t.Fatalf("%s holds %d records in one page, want more in two", victim, len(spans))
			}
			b, err := os.ReadFile(victim)
			if err != nil {
				t.Fatal(err)
			}
			lost := map[uint64]bool{}
			var at, skipped int64
			var rec recordSpan
			if c.record < 0 {
				at = 2 // inside the magic
			} else {
				rec = spans[c.record]
				at = (rec.off + rec.end) / 2
				for _, sp := range spans[c.record:] {
					if sp.off/pageSize != rec.off/pageSize {
						skipped = sp.off - rec.off // resumes at the next page's first record
						break
					}
					lost[sp.seq] = true
				}
			}
			for k := int64(0); k < 4; k++ { // four flipped bytes, as in the field
				b[at+k] ^= 0x5a
			}
			if err := os.WriteFile(victim, b, 0o600); err != nil {
				t.Fatal(err)
			}
			var lb logBuf
			o = openT(t, Options{Dir: dir, SegmentBytes: 4096, Logger: lb.logger()})
			want := uint64(1)
			for want <= n {
				if lost[want] {
					want++
					continue
				}
				m := nextT(t, o)
				if m.Seq != want || !bytes.Equal(m.Payload, payloadFor(int(m.Seq-1))) {
					t.Fatalf("got seq %d (payload %q), want %d", m.Seq, m.Payload, want)
				}
				o.Ack(m.Seq)
				want++
			}
			expectNoNext(t, o)
			st := o.Stats()
			if st.Messages != 0 || st.TailCutBytes != 0 {
				t.Fatalf("stats %+v", st)
			}
			if c.record < 0 {
				if st.Dropped["corrupt"] != 0 || st.SkippedBytes != 0 {
					t.Fatalf("a damaged header cost records: %+v", st)
				}
				return
			}
			if len(lost) < 2 || st.Dropped["corrupt"] != uint64(len(lost)) || st.SkippedBytes != uint64(skipped) {
				t.Fatalf("corrupt %d skipped %d bytes, want %d (the rest of the page) and %d", st.Dropped["corrupt"], st.SkippedBytes, len(lost), skipped)
			}
			l := lb.String()
			if !strings.Contains(l, "level=ERROR") || !strings.Contains(l, filepath.Base(victim)) || !strings.Contains(l, fmt.Sprintf("offset=%d", rec.off)) || strings.Contains(l, "torn") {
				t.Fatalf("damage not logged as an error with file and offset:\n%s", l)
			}
		})
	}
}
