package outbox

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/loopfs"
	"golang.org/x/sys/unix"
)

// fillUp takes every free block of the file system holding path with one
// preallocated file.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var off int64
	for chunk := int64(64 << 20); chunk >= 4096; {
		if err := unix.Fallocate(int(f.Fd()), 0, off, chunk); err != nil {
			chunk /= 2
			continue
		}
		off += chunk
	}
}

// TestStorageFullRecovers fills a real (loop-mounted ext4) file system
// under the outbox: appends are refused with the error, which Err, Stats
// and the log report; once space is freed the outbox accepts messages
// again by itself, and every message it acknowledged is still there, in
// order, before the new ones, also after a reopen.
func TestStorageFullRecovers(t *testing.T) {
	fs := loopfs.Mount(t, 32<<20)
	dir := fs.Dir + "/outbox"
	var lb logBuf
	opts := Options{Dir: dir, SegmentBytes: 64 << 10, Logger: lb.logger()}
	o := openT(t, opts)
	filler := fs.Dir + "/filler"
	fillUp(t, filler)
	ctx := context.Background()
	var stored []uint64
	var failure error
	for i := 0; failure == nil; i++ {
		if i > 100000 {
			t.Fatal("a full file system took 100000 messages")
		}
		seq, err := o.Append(ctx, msgFor(i))
		if err != nil {
			failure = err
			break
		}
		stored = append(stored, seq)
	}
	t.Logf("%d messages stored before the file system was full: %v", len(stored), failure)
	if !errors.Is(failure, unix.ENOSPC) {
		t.Fatalf("append on a full disk: %v, want ENOSPC", failure)
	}
	if o.Err() == nil || !strings.Contains(o.Stats().StorageError, "no space") {
		t.Fatalf("Err %v, Stats.StorageError %q", o.Err(), o.Stats().StorageError)
	}
	if _, err := o.Append(ctx, msgFor(0)); err == nil {
		t.Fatal("append accepted while the storage fails")
	}
	if st := o.Stats(); st.Dropped["storage"] < 2 {
		t.Fatalf("stats while failing: %+v (stored %d)", st, len(stored))
	}
	if l := lb.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "what_to_do") {
		t.Fatalf("failure not logged:\n%s", l)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the outbox to accept messages again", func() bool { return o.Err() == nil })
	after, err := o.Append(ctx, Message{Topic: "after", QoS: 1, Payload: []byte("after the disk was full")})
	if err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Messages != uint64(len(stored))+1 {
		t.Fatalf("backlog %d after recovery, want the %d stored and the new one", st.Messages, len(stored))
	}
	if !strings.Contains(lb.String(), "storage works again") {
		t.Fatalf("recovery not logged:\n%s", lb.String())
	}
	check := func(o *Outbox) {
		t.Helper()
		for _, s := range stored {
			if m := nextT(t, o); m.Seq != s || string(m.Payload) != string(payloadFor(int(s-1))) {
				t.Fatalf("got seq %d, want %d", m.Seq, s)
			}
		}
		if m := nextT(t, o); m.Seq != after || m.Topic != "after" {
			t.Fatalf("got %+v, want seq %d", m, after)
		}
		expectNoNext(t, o)
	}
	check(o)
	o.Close()
	// No segment half made by the failed rotation is left behind.
	segs := segFiles(t, dir)
	for _, first := range segs[:len(segs)-1] {
		if res, err := scanSegment(o.segPath(first), first, nil); err != nil || res.count == 0 {
			t.Fatalf("segment %d holds no record (%v): left by the failure", first, err)
		}
	}
	check(openT(t, opts))
}
