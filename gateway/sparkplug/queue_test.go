package sparkplug

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/internal/syncbuf"
)

// stalledLink lets births through and holds the first DDATA until release
// is closed, like an upstream socket whose peer stopped reading.
type stalledLink struct {
	entered chan struct{} // closed when the first DDATA is being written
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	data    int // DDATA written
}

func (l *stalledLink) pub(topic string, _ []byte, _ byte, _ bool) error {
	if !strings.Contains(topic, "/DDATA/") {
		return nil
	}
	l.once.Do(func() { close(l.entered) })
	<-l.release
	l.mu.Lock()
	l.data++
	l.mu.Unlock()
	return nil
}

func (l *stalledLink) written() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.data
}

// TestOfferNeverWaits: with the upstream write stalled, Offer returns at
// once; QueueSize readings wait, the next are dropped, counted and logged
// once for the episode; released, the node sends what waited; readings
// still queued when Run ends are kept for the next birth, not lost.
func TestOfferNeverWaits(t *testing.T) {
	cases := []struct {
		name      string
		offers    int
		queue     int
		wantDrops uint64
	}{
		{"within the queue", 3, 4, 0},
		{"beyond the queue", 10, 4, 5}, // one being written, four waiting
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncbuf.Buffer{}
			n := New(Options{
				GroupID: "g", EdgeNodeID: "n", StateFile: filepath.Join(t.TempDir(), "bdseq"), QueueSize: tc.queue,
				Devices: []Device{{Name: "climate", Type: "sim", Desc: devices.Description{Values: []devices.Value{{Name: "temperature", Type: devices.Float}}}}},
				Logger:  slog.New(slog.NewTextHandler(logs, nil)),
			})
			n.Will()
			l := &stalledLink{entered: make(chan struct{}), release: make(chan struct{})}
			n.OnConnect(l.pub)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); n.Run(ctx) }()
			var releaseOnce sync.Once
			unstall := func() { releaseOnce.Do(func() { close(l.release) }) }
			defer func() { unstall(); cancel(); <-done }()

			if !n.Offer("climate", []byte(reading)) {
				t.Fatal("the first reading was not queued")
			}
			select {
			case <-l.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the node did not start writing the first reading upstream")
			}
			offered := make(chan struct{})
			go func() {
				defer close(offered)
				for i := 1; i < tc.offers; i++ {
					n.Offer("climate", []byte(reading))
				}
			}()
			select {
			case <-offered:
			case <-time.After(10 * time.Second):
				unstall()
				t.Fatal("Offer waited for the stalled upstream write")
			}
			stats := make(chan Stats, 1)
			go func() { stats <- n.Stats() }()
			select {
			case st := <-stats:
				if st.QueueDropped != tc.wantDrops {
					t.Errorf("during the stall QueueDropped = %d, want %d", st.QueueDropped, tc.wantDrops)
				}
			case <-time.After(10 * time.Second):
				unstall()
				t.Fatal("Stats waited for the stalled upstream write (metrics would hang)")
			}
			if n.Offer("nosuch", []byte(reading)) {
				t.Error("a reading of a device the node does not have was queued")
			}
			unstall()
			want := tc.offers - int(tc.wantDrops)
			deadline := time.Now().Add(10 * time.Second)
			for l.written() < want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond) // polls a counter; the writes are what is awaited
			}
			if got := l.written(); got != want {
				t.Fatalf("%d DDATA written after the release, want %d", got, want)
			}
			if got := n.Stats().QueueDropped; got != tc.wantDrops {
				t.Errorf("QueueDropped = %d, want %d", got, tc.wantDrops)
			}
			if warned := bytes.Count([]byte(logs.String()), []byte("readings dropped")); (tc.wantDrops > 0) != (warned == 1) {
				t.Errorf("%d drop warnings for %d drops, want one per episode:\n%s", warned, tc.wantDrops, logs.String())
			}
		})
	}
}

// TestRunKeepsQueuedAtStop: what waits in the queue when Run ends is stored
// for the next birth (and the pending file), not sent and not lost.
func TestRunKeepsQueuedAtStop(t *testing.T) {
	n := New(Options{
		GroupID: "g", EdgeNodeID: "n", StateFile: filepath.Join(t.TempDir(), "bdseq"),
		Devices: []Device{{Name: "climate", Type: "sim"}},
	})
	for range 3 {
		n.Offer("climate", []byte(reading))
	}
	n.Offer("climate", []byte("not json"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n.Run(ctx)
	st := n.Stats()
	if st.Stored != 3 || st.BadReadings != 1 {
		t.Fatalf("stored %d, bad %d after stopping; want the 3 queued readings stored and 1 bad", st.Stored, st.BadReadings)
	}
}
