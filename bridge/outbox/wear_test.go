package outbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/loopfs"
)

// wearResult is what one wear run measured.
type wearResult struct {
	msgs         int
	payloadBytes uint64
	devBytes     uint64 // bytes that reached the block device, journal included
	closeBytes   uint64 // of which Close (ack log compaction, final syncs)
	fileBytes    uint64 // Stats.BytesWritten
	fsyncs       uint64
	journalTx    string // jbd2 transactions committed (all of the mount's life)
}

// perPayload is the steady state: block-device bytes per payload byte
// while appending, Close excluded.
func (r wearResult) perPayload() float64 {
	return float64(r.devBytes-r.closeBytes) / float64(r.payloadBytes)
}

func (r wearResult) String() string {
	return fmt.Sprintf("%d msgs: %.2f block-device B per payload B (%.2f written by the outbox; Close adds %d B), %d syncs, %s journal transactions",
		r.msgs, r.perPayload(), float64(r.fileBytes)/float64(r.payloadBytes), r.closeBytes, r.fsyncs, r.journalTx)
}

// measureWear opens an outbox on its own loop-mounted ext4 and appends
// 100-byte QoS 1 messages with the link down (nothing is read or acked):
// rate messages per second for d (open loop: one AppendAsync per tick, as
// from many publishers), or, with rate 0, as fast as the outbox takes them
// until maxMsgs. It counts the block device's written bytes from just after
// Open until every message is durable (then a syncfs), and Close's apart.
// With warm, an earlier outage is appended and drained first, so that the
// measured one writes into recycled segments.
func measureWear(t testing.TB, opts Options, rate int, d time.Duration, maxMsgs int, warm bool) wearResult {
	t.Helper()
	fs := loopfs.Mount(t, 1<<30)
	opts.Dir = fs.Dir + "/outbox"
	if warm {
		// An earlier outage, drained: its acknowledged segments are the
		// spares this one writes into.
		w, err := Open(Options{Dir: opts.Dir})
		if err != nil {
			t.Fatal(err)
		}
		// Twice: the second pass rotates into a spare, so the measured
		// outage starts in a recycled segment, as every one after the
		// first does.
		for _, segs := range []int{maxSpares + 1, 2} {
			var wg sync.WaitGroup
			rec := recordSize(&Message{Topic: "readings/door", QoS: 1, Payload: benchPayload})
			for queued := 0; queued < segs*defaultSegmentBytes; queued += rec {
				wg.Add(1)
				if err := w.AppendAsync(context.Background(), Message{Topic: "readings/door", QoS: 1, Payload: benchPayload}, func(uint64, error) { wg.Done() }); err != nil {
					t.Fatal(err)
				}
			}
			wg.Wait()
			for w.Stats().Messages > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				m, err := w.Next(ctx)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				w.Ack(m.Seq)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if sp, _ := listSpares(opts.Dir); len(sp) != maxSpares {
			t.Fatalf("%d spares after the warm-up, want %d", len(sp), maxSpares)
		}
	}
	o, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	fs.Sync()
	before := fs.WrittenBytes()
	ctx := context.Background()
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	done := func(_ uint64, err error) {
		if err != nil {
			failed.CompareAndSwap(nil, &err)
		}
		wg.Done()
	}
	m := Message{Topic: "readings/door", QoS: 1, Payload: benchPayload, Origin: "publisher-1"}
	appendOne := func(n int) {
		m.OriginPID = uint16(n)
		wg.Add(1)
		if err := o.AppendAsync(ctx, m, done); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if rate > 0 {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		end := time.After(d)
	loop:
		for {
			select {
			case <-tick.C:
				appendOne(n)
				n++
			case <-end:
				break loop
			}
		}
		tick.Stop()
	} else {
		for ; n < maxMsgs; n++ {
			appendOne(n)
		}
	}
	wg.Wait() // every callback runs, at the latest at Close
	if err := failed.Load(); err != nil {
		t.Fatal(*err)
	}
	fs.Sync()
	steady := fs.WrittenBytes() - before
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	fs.Sync()
	st := o.Stats()
	jb, _ := os.ReadFile("/proc/fs/jbd2/" + filepath.Base(fs.Dev) + "-8/info")
	jtx, _, _ := strings.Cut(string(jb), " ")
	total := fs.WrittenBytes() - before
	return wearResult{msgs: n, payloadBytes: st.PayloadBytes, devBytes: total, closeBytes: total - steady,
		fileBytes: st.BytesWritten, fsyncs: st.Fsyncs, journalTx: jtx}
}

// BenchmarkWear measures flash wear with the link down: block-device bytes
// per payload byte (disk-B/B) at 20 and 200 msg/s for WEAR_SECONDS (default
// 30) and at saturation (WEAR_MSGS, default 200000), from a fresh outbox
// and (recycled) after an earlier outage was drained, on a loop-mounted ext4
// (as root; skipped otherwise), with CommitInterval WEAR_COMMIT (default
// 2s). "fresh" is an outage longer than the prefilled segments and spares:
// it writes into new, fallocated segments. Run one at a time:
//
//	go test -run x -bench Wear -benchtime 1x ./bridge/outbox/
func BenchmarkWear(b *testing.B) {
	secs, _ := strconv.Atoi(os.Getenv("WEAR_SECONDS"))
	if secs <= 0 {
		secs = 30
	}
	msgs, _ := strconv.Atoi(os.Getenv("WEAR_MSGS"))
	if msgs <= 0 {
		msgs = 200000
	}
	commit := 2 * time.Second
	if v := os.Getenv("WEAR_COMMIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("WEAR_COMMIT: %v", err)
		}
		commit = d
	}
	for _, c := range []struct {
		rate  int
		warm  bool
		fresh bool
	}{{20, false, false}, {200, false, false}, {0, false, false}, {20, true, false}, {200, true, false},
		{20, false, true}, {200, false, true}, {0, false, true}} {
		name := fmt.Sprintf("rate=%d", c.rate)
		if c.rate == 0 {
			name = "rate=saturation"
		}
		if c.warm {
			name += "/recycled"
		}
		if c.fresh {
			name += "/fresh"
		}
		b.Run(name, func(b *testing.B) {
			var r wearResult
			noPrefill = c.fresh
			defer func() { noPrefill = false }()
			for i := 0; i < b.N; i++ {
				r = measureWear(b, Options{CommitInterval: commit}, c.rate, time.Duration(secs)*time.Second, msgs, c.warm)
			}
			b.ReportMetric(r.perPayload(), "disk-B/B")
			b.ReportMetric(float64(r.fileBytes)/float64(r.payloadBytes), "file-B/B")
			b.ReportMetric(float64(r.fsyncs)/float64(r.msgs), "syncs/msg")
			b.Log(r)
		})
	}
}
