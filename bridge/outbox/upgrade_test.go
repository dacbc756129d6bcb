package outbox

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"
)

// TestReadsVersion1Segments opens a copy of testdata/v1, an outbox written
// with the version-1 record format of edgegw 0.1 (120 messages over three
// segments, 1-30 and 35 acknowledged, 40 released): every unacknowledged
// message comes back as written, new ones are appended after them, and a
// reopen still reads both.
func TestReadsVersion1Segments(t *testing.T) {
	dir := copyDir(t, "testdata/v1")
	check := func(o *Outbox, extra uint64) {
		t.Helper()
		checkFixture(t, o, extra, func(_ uint64, tm time.Time) bool { return !tm.IsZero() })
	}
	o := openT(t, Options{Dir: dir, SegmentBytes: 4096})
	if st := o.Stats(); st.Messages != 89 || st.TailCutBytes != 0 || st.SkippedBytes != 0 {
		t.Fatalf("stats after opening the 0.1 outbox: %+v", st)
	}
	check(o, 0)
	for i := 0; i < 60; i++ { // enough to rotate into a new segment
		if _, err := o.Append(context.Background(), Message{Topic: "readings/new", QoS: 1, Payload: []byte("after the upgrade")}); err != nil {
			t.Fatal(err)
		}
	}
	o.Rewind()
	check(o, 60)
	o.Close()
	check(openT(t, Options{Dir: dir, SegmentBytes: 4096}), 60)
}

// TestReadsVersion3Segments opens a copy of testdata/v3, an outbox written
// by edgegw 0.3 with version-3 records (the fixture messages of
// TestReadsVersion1Segments, stamped 37 ms apart from 2026-03-04T05:06:07Z,
// over three segments of 4 KiB, the last one ending mid-page; 1-30 and 35
// acknowledged, 40 released): every unacknowledged message comes back as
// written, time included; new version-4 records go to a new segment after
// them (the version-3 one is sealed, not continued), and a reopen still
// reads both.
func TestReadsVersion3Segments(t *testing.T) {
	dir := copyDir(t, "testdata/v3")
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	check := func(o *Outbox, extra uint64) {
		t.Helper()
		checkFixture(t, o, extra, func(seq uint64, tm time.Time) bool {
			return tm.Equal(t0.Add(time.Duration(seq-1) * 37 * time.Millisecond))
		})
	}
	o := openT(t, Options{Dir: dir, SegmentBytes: 4096})
	if st := o.Stats(); st.Messages != 89 || st.TailCutBytes != 0 || st.SkippedBytes != 0 {
		t.Fatalf("stats after opening the 0.3 outbox: %+v", st)
	}
	check(o, 0)
	for i := 0; i < 200; i++ { // enough to rotate into a new segment
		if _, err := o.Append(context.Background(), Message{Topic: "readings/new", QoS: 1, Payload: []byte("after the upgrade")}); err != nil {
			t.Fatal(err)
		}
	}
	segs := segFiles(t, dir)
	if len(segs) < 5 || segs[3] != 121 {
		t.Fatalf("segments %v: want the version-3 ones, then new ones from 121", segs)
	}
	for i, first := range segs {
		b, err := os.ReadFile(o.segPath(first))
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]byte{true: segVersion3, false: segVersion}[i < 3]; b[6] != want {
			t.Fatalf("segment %d has version %d, want %d", first, b[6], want)
		}
	}
	o.Rewind()
	check(o, 200)
	o.Close()
	check(openT(t, Options{Dir: dir, SegmentBytes: 4096}), 200)
}

// checkFixture reads the fixture outbox's unacknowledged messages (31-120
// but 35, as v1FixtureMsg made them, 40 released, each time checked by
// timeOK), then extra messages "after the upgrade" from 121, then nothing.
func checkFixture(t *testing.T, o *Outbox, extra uint64, timeOK func(seq uint64, tm time.Time) bool) {
	t.Helper()
	for seq := uint64(31); seq <= 120; seq++ {
		if seq == 35 {
			continue
		}
		m := nextT(t, o)
		w := v1FixtureMsg(int(seq - 1))
		if m.Seq != seq || m.Topic != w.Topic || m.QoS != w.QoS || m.Retain != w.Retain || !bytes.Equal(m.Payload, w.Payload) ||
			(w.QoS == 2 && (m.Origin != w.Origin || m.OriginPID != w.OriginPID)) || m.Released != (seq == 40) || !timeOK(seq, m.Time) {
			t.Fatalf("seq %d: got %+v, want %+v (and its time)", seq, m, w)
		}
	}
	for seq := uint64(121); seq < 121+extra; seq++ {
		if m := nextT(t, o); m.Seq != seq || string(m.Payload) != "after the upgrade" {
			t.Fatalf("got %+v, want seq %d", m, seq)
		}
	}
	expectNoNext(t, o)
}
