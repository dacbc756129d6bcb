package outbox

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestConcurrentProducersConsumer runs producers, a consumer with an
// in-flight window acking out of order, QoS 2 releases and rewinds at once
// (run it with -race).
func TestConcurrentProducersConsumer(t *testing.T) {
	const producers, per = 4, 1500
	dir := t.TempDir()
	o := openT(t, Options{Dir: dir, SegmentBytes: 8 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, producers+1)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				m := Message{Topic: fmt.Sprintf("p/%d", p), QoS: byte(1 + i%2), Payload: []byte(fmt.Sprintf("%d-%d", p, i))}
				if err := o.AppendAsync(ctx, m, func(_ uint64, err error) {
					if err != nil {
						errs <- err
					}
				}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}

	rng := rand.New(rand.NewPCG(3, 4))
	acked := map[uint64]bool{}
	epochLast := map[string]int{} // per topic: last index since the last Rewind
	newest := map[string]int{}    // per topic: highest index ever seen
	var window []Message
	var relWG sync.WaitGroup
	var ackMu sync.Mutex
	ack := func(seq uint64) {
		ackMu.Lock()
		defer ackMu.Unlock()
		if err := o.Ack(seq); err != nil {
			t.Errorf("Ack %d: %v", seq, err)
		}
		acked[seq] = true
	}
	ackedCount := func() int { ackMu.Lock(); defer ackMu.Unlock(); return len(acked) }
	seen := map[uint64]bool{}
	ackWindow := func(n int) {
		rng.Shuffle(len(window), func(a, b int) { window[a], window[b] = window[b], window[a] })
		for _, w := range window[:n] {
			if w.QoS == 2 && !w.Released {
				relWG.Add(1)
				o.MarkReleased(w.Seq, func(err error) {
					defer relWG.Done()
					if err != nil {
						t.Errorf("MarkReleased %d: %v", w.Seq, err)
					}
					ack(w.Seq)
				})
			} else {
				ack(w.Seq)
			}
		}
		window = append(window[:0], window[n:]...)
	}
	for got := 0; ; got++ {
		if len(seen) == producers*per {
			relWG.Wait()
			if ackedCount() == producers*per {
				break
			}
		}
		if got > 0 && got%700 == 0 {
			relWG.Wait()
			window = window[:0]
			o.Rewind()
			clear(epochLast)
		}
		m, err := o.Next(ctx)
		if err != nil {
			t.Fatalf("Next: %v (acked %d)", err, ackedCount())
		}
		seen[m.Seq] = true
		var p, i int
		fmt.Sscanf(string(m.Payload), "%d-%d", &p, &i)
		// Within one pass (between rewinds) each topic's indices rise; a
		// message never seen before is exactly the next of its topic.
		if prev, ok := epochLast[m.Topic]; ok && i <= prev {
			t.Fatalf("topic %s: index %d after %d", m.Topic, i, prev)
		}
		epochLast[m.Topic] = i
		if first, ok := newest[m.Topic]; !ok && i != 0 || ok && i > first && i != first+1 {
			t.Fatalf("topic %s: new index %d after %d (skipped or reordered)", m.Topic, i, first)
		}
		if first, ok := newest[m.Topic]; !ok || i > first {
			newest[m.Topic] = i
		}
		window = append(window, m)
		switch {
		case len(seen) == producers*per:
			ackWindow(len(window))
		case len(window) >= 16:
			ackWindow(8)
		}
	}
	relWG.Wait()
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if err := o.flush(); err != nil {
		t.Fatal(err)
	}
	st := o.Stats()
	if st.Messages != 0 || st.Appended != producers*per || st.Replayed == 0 {
		t.Fatalf("stats %+v", st)
	}
	if n := len(segFiles(t, dir)); n != 1 {
		t.Fatalf("%d segment files left after acking everything", n)
	}
}
