package outbox

import (
	"bytes"
	"context"
	"testing"
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
		for seq := uint64(31); seq <= 120; seq++ {
			if seq == 35 {
				continue
			}
			m := nextT(t, o)
			w := v1FixtureMsg(int(seq - 1))
			if m.Seq != seq || m.Topic != w.Topic || m.QoS != w.QoS || m.Retain != w.Retain || !bytes.Equal(m.Payload, w.Payload) ||
				(w.QoS == 2 && (m.Origin != w.Origin || m.OriginPID != w.OriginPID)) || m.Released != (seq == 40) || m.Time.IsZero() {
				t.Fatalf("seq %d: got %+v, want %+v", seq, m, w)
			}
		}
		for seq := uint64(121); seq < 121+extra; seq++ {
			if m := nextT(t, o); m.Seq != seq || string(m.Payload) != "after the upgrade" {
				t.Fatalf("got %+v, want seq %d", m, seq)
			}
		}
		expectNoNext(t, o)
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
