package outbox

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestRoundTripOrderAndReopen(t *testing.T) {
	dir := t.TempDir()
	o := openT(t, Options{Dir: dir})
	want := []Message{
		{Topic: "readings/door", QoS: 1, Payload: []byte(`{"uid":"0A1B2C3D4E"}`)},
		{Topic: "readings/temp", QoS: 2, Retain: true, Payload: []byte("21.5"), Origin: "sensor-7", OriginPID: 42},
		{Topic: "t", QoS: 1, Payload: nil},
		{Topic: "big", QoS: 1, Payload: bytes.Repeat([]byte{0xff, 0}, 40000)},
	}
	for i, m := range want {
		seq, err := o.Append(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		if seq != uint64(i+1) {
			t.Fatalf("seq %d, want %d", seq, i+1)
		}
	}
	check := func(o *Outbox) {
		t.Helper()
		for i, w := range want {
			m := nextT(t, o)
			if m.Seq != uint64(i+1) || m.Topic != w.Topic || m.QoS != w.QoS || m.Retain != w.Retain ||
				!bytes.Equal(m.Payload, w.Payload) || m.Origin != w.Origin || m.OriginPID != w.OriginPID || m.Time.IsZero() {
				t.Fatalf("message %d: got %+v", i+1, m)
			}
		}
		expectNoNext(t, o)
	}
	check(o)
	st := o.Stats()
	var payload uint64
	for _, m := range want {
		payload += uint64(len(m.Payload))
	}
	if st.Appended != uint64(len(want)) || st.PayloadBytes != payload || st.BytesWritten <= payload || st.Fsyncs == 0 || st.Messages != uint64(len(want)) {
		t.Fatalf("stats %+v", st)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := o.Append(context.Background(), want[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
	o2 := openT(t, Options{Dir: dir})
	check(o2) // nothing acked: everything again, same seqs
	seq, err := o2.Append(context.Background(), want[0])
	if err != nil || seq != uint64(len(want)+1) {
		t.Fatalf("append after reopen: seq %d err %v, want %d", seq, err, len(want)+1)
	}
}

func TestAppendRejectsBadMessages(t *testing.T) {
	o := openT(t, Options{Dir: t.TempDir()})
	for _, m := range []Message{
		{Topic: "a", QoS: 0},
		{Topic: "a", QoS: 3},
		{Topic: string(make([]byte, 70000)), QoS: 1},
	} {
		if err := o.AppendAsync(context.Background(), m, nil); err == nil {
			t.Errorf("AppendAsync(qos %d, topic %d bytes) accepted", m.QoS, len(m.Topic))
		}
	}
	if err := o.Ack(1); err == nil {
		t.Error("Ack of a seq never appended succeeded")
	}
}

func TestAcksPersistAndOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	o := openT(t, Options{Dir: dir})
	appendN(t, o, 0, 100)
	// In order 1..40, then out of order 60, 50, 45, 99.
	for s := uint64(1); s <= 40; s++ {
		if err := o.Ack(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []uint64{60, 50, 45, 99, 50} {
		if err := o.Ack(s); err != nil {
			t.Fatal(err)
		}
	}
	if got := o.Stats().Messages; got != 56 {
		t.Fatalf("Messages = %d, want 56", got)
	}
	o.Close()
	o = openT(t, Options{Dir: dir})
	if got := o.Stats().Messages; got != 56 {
		t.Fatalf("after reopen Messages = %d, want 56", got)
	}
	skip := map[uint64]bool{45: true, 50: true, 60: true, 99: true}
	for s := uint64(41); s <= 100; s++ {
		if skip[s] {
			continue
		}
		if m := nextT(t, o); m.Seq != s || !bytes.Equal(m.Payload, payloadFor(int(s-1))) {
			t.Fatalf("got seq %d, want %d", m.Seq, s)
		}
	}
	expectNoNext(t, o)
	// Rewind resends the unacked ones, counted as replayed.
	o.Rewind()
	if m := nextT(t, o); m.Seq != 41 {
		t.Fatalf("after Rewind got %d, want 41", m.Seq)
	}
	if st := o.Stats(); st.Replayed != 1 {
		t.Fatalf("Replayed = %d, want 1", st.Replayed)
	}
}

func TestSegmentsDeletedWhenAcked(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 4096}
	o := openT(t, opts)
	appendN(t, o, 0, 600) // ~28 KiB: about seven segments
	segs := segFiles(t, dir)
	if len(segs) < 5 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	// Ack everything in the first two segments, out of order.
	upTo := segs[2] - 1
	for s := upTo; s >= 1; s-- {
		if err := o.Ack(s); err != nil {
			t.Fatal(err)
		}
	}
	o.Close() // the committer has processed every ack when Close returns
	if got := segFiles(t, dir); len(got) != len(segs)-2 || got[0] != segs[2] {
		t.Fatalf("segments %v after acking the first two of %v", got, segs)
	}
	o = openT(t, opts)
	if m := nextT(t, o); m.Seq != upTo+1 {
		t.Fatalf("first unacked %d, want %d", m.Seq, upTo+1)
	}
	// Ack everything: only the active segment stays, and the seq survives.
	for s := upTo + 1; s <= 600; s++ {
		if err := o.Ack(s); err != nil {
			t.Fatal(err)
		}
	}
	o.Close()
	if got := segFiles(t, dir); len(got) != 1 || got[0] != segs[len(segs)-1] {
		t.Fatalf("segments %v after acking all, want only the active %d", got, segs[len(segs)-1])
	}
	o = openT(t, opts)
	st := o.Stats()
	first := segFiles(t, dir)[0]
	res, err := scanSegment(o.segPath(first), first, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The active segment is preallocated: Bytes counts its records.
	if st.Messages != 0 || st.Bytes != uint64(res.goodSize) || res.goodSize <= segHeaderSize {
		t.Fatalf("stats after acking all: %+v (records end at %d)", st, res.goodSize)
	}
	expectNoNext(t, o)
	if seq, err := o.Append(context.Background(), msgFor(1)); err != nil || seq != 601 {
		t.Fatalf("append after all acked: seq %d, %v; want 601", seq, err)
	}
}

// TestRewindWakesWaitingNext: a Next blocked at the end of the log returns
// the first unacknowledged message as soon as Rewind is called.
func TestRewindWakesWaitingNext(t *testing.T) {
	o := openT(t, Options{Dir: t.TempDir()})
	appendN(t, o, 0, 3)
	for i := 1; i <= 3; i++ {
		nextT(t, o)
	}
	o.Ack(1)
	waiting := make(chan struct{}, 1)
	o.mu.Lock()
	o.testOnWait = func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	o.mu.Unlock()
	got := make(chan uint64, 1)
	go func() {
		m, err := o.Next(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- m.Seq
	}()
	select {
	case <-waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not wait at the end of the log")
	}
	o.Rewind()
	select {
	case s := <-got:
		if s != 2 {
			t.Fatalf("after Rewind got %d, want 2", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting Next did not see the Rewind")
	}
}
