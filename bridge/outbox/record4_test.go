package outbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestCompactRecordSize: a 100-byte payload on a 13-byte topic takes as
// many bytes as a version-3 record (about 130) as the first record of a
// page and 109 after it, so a page holds 37 of them (31 of version 3).
func TestCompactRecordSize(t *testing.T) {
	m := Message{Seq: 1000000, Time: time.Now(), Topic: "readings/door", QoS: 1, Payload: bytes.Repeat([]byte{'x'}, 100)}
	var c pageCtx
	v := queuedView(appendRecord(nil, &m))
	abs, _ := appendRecordV4(nil, nil, &c, &v, false)
	v3 := recordSize(&m)
	c.note(0, &v, v.time.UnixMilli()-timeEpochMs, true)
	m.Seq++
	m.Time = m.Time.Add(50 * time.Millisecond)
	v = queuedView(appendRecord(nil, &m))
	delta, _ := appendRecordV4(nil, nil, &c, &v, true)
	if len(abs) != v3 || len(delta) != 109 {
		t.Fatalf("records of %d and %d bytes, want %d and 109", len(abs), len(delta), v3)
	}
	if per := 1 + (pageSize-segHeaderSize-len(abs))/len(delta); per != 37 {
		t.Fatalf("%d records in the first page, want 37", per)
	}
}

// TestRestartContinuesLastPage: without a commit interval the last page
// is written partly filled; after a restart (a clean Close, or a crash)
// the first records continue that page as deltas against the records the
// previous run left there (topics of the page referenced, a new topic
// added), and everything reads back as written, also after a reopen.
func TestRestartContinuesLastPage(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, SegmentBytes: 1 << 20}
			t0 := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
			msg := func(i int) Message {
				m := v1FixtureMsg(i) // QoS 1 and 2 (with origin), retained ones, four topics
				if i >= 15 {
					m.Topic = "readings/other" // new in the page after the restart
				}
				m.Time = t0.Add(time.Duration(i*i) * time.Millisecond)
				return m
			}
			o := openT(t, opts)
			for i := 0; i < 10; i++ {
				if _, err := o.Append(context.Background(), msg(i)); err != nil {
					t.Fatal(err)
				}
			}
			if crash {
				crashT(t, o)
			} else {
				o.Close()
			}
			o = openT(t, opts)
			for i := 10; i < 20; i++ {
				if _, err := o.Append(context.Background(), msg(i)); err != nil {
					t.Fatal(err)
				}
			}
			o.Close()
			path := o.segPath(1)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			spans := recordSpans(t, path)
			if len(spans) != 20 {
				t.Fatalf("%d records in the segment, want 20", len(spans))
			}
			for i, sp := range spans {
				_, k := binary.Uvarint(b[sp.off:])
				isDelta := b[sp.off+int64(k)+4]&v4Delta != 0
				if sp.off/pageSize != 0 || isDelta != (i > 0) {
					t.Fatalf("record %d (seq %d) at %d: delta %v; want every record in page 0, all but the first deltas", i, sp.seq, sp.off, isDelta)
				}
			}
			o = openT(t, opts)
			for i := 0; i < 20; i++ {
				m, w := nextT(t, o), msg(i)
				if m.Seq != uint64(i+1) || m.Topic != w.Topic || m.QoS != w.QoS || m.Retain != w.Retain || !bytes.Equal(m.Payload, w.Payload) ||
					!m.Time.Equal(w.Time) || (w.QoS == 2 && (m.Origin != w.Origin || m.OriginPID != w.OriginPID)) {
					t.Fatalf("seq %d: got %+v, want %+v", i+1, m, w)
				}
			}
			expectNoNext(t, o)
			if st := o.Stats(); st.TailCutBytes != 0 || st.Dropped["corrupt"] != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}
