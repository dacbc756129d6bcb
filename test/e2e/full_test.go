package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgegw/edgegw/gateway"
	"github.com/edgegw/edgegw/internal/netproxy"
	"github.com/edgegw/edgegw/internal/testenv"
)

// TestFullBuffer proves each full_policy does what it says: with a small buffer
// (max_bytes 256KiB, segment_bytes 64KiB, which the outbox lowers to an
// eighth of max_bytes) and the link cut, a local QoS 1 publisher sends about
// twice what fits, the link is restored, and each full_policy must do what
// it says, counted, with the rest delivered in order:
//
//   - drop_oldest: every message is acknowledged; the oldest (whole
//     segments) are deleted, so per topic what arrives is a run of the
//     newest numbers up to the last; what is missing equals the
//     full_oldest drop count.
//   - drop_newest: for a network publisher, "dropping the newest" means
//     refusing it: the message is never acknowledged and the publisher is
//     disconnected (MQTT 3.1.1 has no negative PUBACK), so a publisher that
//     keeps its session resends it later. The test's publisher gives up on
//     what was not acknowledged and carries on with new numbers on a new
//     connection. What arrives is exactly what was acknowledged — the
//     oldest — and every refusal is counted in full_newest and in the
//     bridge's Refused.
//   - block: the publisher is held back — no PUBACK while the buffer is
//     full, it stays connected — and after the link returns every message
//     is acknowledged and arrives, 1..n in order.
func TestFullBuffer(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	const n = 2000 // ~290 bytes each on disk: about twice the 256KiB buffer
	for _, policy := range []string{"drop_oldest", "drop_newest", "block"} {
		t.Run(policy, func(t *testing.T) {
			f := pki(t)
			up := upstream(t, f)
			px, err := netproxy.New(up.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer px.Close()
			sub := subscribeSeqs(t, f, up.Addr(), 1)
			buffer := fmt.Sprintf("[buffer]\nmax_bytes = \"256KiB\"\nsegment_bytes = \"64KiB\"\nfull_policy = %q\n", policy)
			gw, _ := runGateway(t, storeConfig(t, f, t.TempDir(), "127.0.0.1:0", px.Addr(), 1, buffer))
			waitUntil(t, 20*time.Second, "the upstream link", func() bool { return gw.Status().Bridge.LinkUp })
			px.Cut()
			waitUntil(t, 20*time.Second, "the link to be down", func() bool { return !gw.Status().Bridge.LinkUp })

			fp := &fullPub{addr: gw.BrokerAddr(), id: "pub-full", n: n, window: 100, acked: map[string][]uint64{}, unacked: map[string][]uint64{}}
			switch policy {
			case "drop_oldest":
				if err := fp.run(1); err != nil {
					t.Fatal(err)
				}
				checkDropOldest(t, gw, px, sub, fp)
			case "drop_newest":
				if err := fp.run(200); err != nil {
					t.Fatal(err)
				}
				checkDropNewest(t, gw, px, sub, fp)
			case "block":
				checkBlock(t, gw, px, sub, fp)
			}
		})
	}
}

// fullPub publishes n padded QoS 1 messages round robin over storeTopics
// with a window of tokens; when its connection is closed it connects again
// (clean session) and carries on with the next number, up to maxLives
// connections.
type fullPub struct {
	addr, id  string
	n, window int

	mu      sync.Mutex
	acked   map[string][]uint64
	unacked map[string][]uint64
	lives   int
	sent    int
	// firstErr is the first message not acknowledged and why.
	firstErr string
}

func (p *fullPub) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := 0
	for _, s := range p.acked {
		k += len(s)
	}
	return k
}

func (p *fullPub) run(maxLives int) error {
	pad := strings.Repeat("x", 301)
	i := 0
	for i < p.n {
		if p.lives == maxLives {
			return fmt.Errorf("publisher: %d connections used and only %d of %d messages sent", maxLives, i, p.n)
		}
		c := localClient(p.addr, p.id, true, nil)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			return fmt.Errorf("local publisher connect: %v", tok.Error())
		}
		p.mu.Lock()
		p.lives++
		p.mu.Unlock()
		window := make(chan sentMsg, p.window)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range window {
				ok := s.tok.WaitTimeout(120*time.Second) && s.tok.Error() == nil
				p.mu.Lock()
				if ok {
					p.acked[s.topic] = append(p.acked[s.topic], s.seq)
				} else {
					p.unacked[s.topic] = append(p.unacked[s.topic], s.seq)
					if p.firstErr == "" {
						p.firstErr = fmt.Sprintf("%s %d: %v", s.topic, s.seq, s.tok.Error())
					}
				}
				p.mu.Unlock()
			}
		}()
		for ; i < p.n && c.IsConnectionOpen(); i++ {
			topic := storeTopics[i%len(storeTopics)]
			seq := uint64(i/len(storeTopics) + 1)
			// Sizes vary (100-301 bytes of padding), so a refused message can
			// be followed by a smaller one that would fit.
			tok := c.Publish(topic, 1, false, payloadOf(topic, seq)+" "+pad[:100+(i%4)*67])
			if notSent(tok) {
				break
			}
			window <- sentMsg{tok, topic, seq}
		}
		close(window)
		wg.Wait()
		c.Disconnect(0)
	}
	p.sent = i
	return nil
}

// drain restores the link and waits until the outbox is empty, then until
// the subscriber has everything the bridge had acknowledged.
func drain(t testing.TB, gw *gateway.Gateway, px *netproxy.Proxy, sub *seqSub) {
	t.Helper()
	px.Restore()
	waitUntil(t, 60*time.Second, "the outbox to drain", func() bool {
		s := gw.Status().Bridge
		return s.LinkUp && s.Outbox.Messages == 0 && s.Inflight == 0
	})
	sub.barrier(t, 1)
}

func checkDropOldest(t *testing.T, gw *gateway.Gateway, px *netproxy.Proxy, sub *seqSub, fp *fullPub) {
	if fp.lives != 1 || len(fp.unacked) != 0 {
		t.Fatalf("drop_oldest: the publisher was held back or refused: %d connections, unacknowledged %v", fp.lives, fp.unacked)
	}
	st := gw.Status().Bridge.Outbox
	if !st.Full {
		t.Errorf("drop_oldest: Status().Bridge.Outbox.Full is false with the buffer over max_bytes")
	}
	drain(t, gw, px, sub)
	got := sub.snapshot()
	st = gw.Status().Bridge.Outbox
	dropped := st.Dropped["full_oldest"]
	if dropped == 0 {
		t.Fatalf("drop_oldest: nothing counted as dropped after %d messages into a 256KiB buffer", fp.n)
	}
	// Per topic the newest must arrive: a run from some number up to the
	// last one published; everything before it is the dropped oldest.
	want := map[string][]uint64{}
	missing := uint64(0)
	for _, topic := range storeTopics {
		last := fp.acked[topic][len(fp.acked[topic])-1]
		lowest := last + 1
		for _, s := range got[topic] {
			lowest = min(lowest, s)
		}
		for s := lowest; s <= last; s++ {
			want[topic] = append(want[topic], s)
		}
		missing += lowest - 1
		t.Logf("drop_oldest: %s: numbers 1..%d dropped, %d..%d delivered", topic, lowest-1, lowest, last)
	}
	checkSeqs(t, got, nil, acceptance{want: want})
	if missing != dropped {
		t.Errorf("drop_oldest: %d messages are missing upstream but the outbox counted %d dropped (full_oldest)", missing, dropped)
	}
	if other := st.Dropped["full_newest"] + st.Dropped["expired"] + st.Dropped["corrupt"]; other != 0 {
		t.Errorf("drop_oldest: other drops counted: %v", st.Dropped)
	}
}

func checkDropNewest(t *testing.T, gw *gateway.Gateway, px *netproxy.Proxy, sub *seqSub, fp *fullPub) {
	// The outbox counts a refusal when it refuses, the bridge when the
	// refusal is reported back: wait for the last reports.
	waitUntil(t, 10*time.Second, "the bridge's Refused to catch up with full_newest", func() bool {
		bs := gw.Status().Bridge
		return bs.Refused == bs.Outbox.Dropped["full_newest"]
	})
	bs := gw.Status().Bridge
	refusedN := uint64(0)
	for _, s := range fp.unacked {
		refusedN += uint64(len(s))
	}
	dropped := bs.Outbox.Dropped["full_newest"]
	t.Logf("drop_newest: %d acknowledged, %d not (refused or behind a refusal; first %s), %d connections; full_newest %d, bridge refused %d",
		fp.ackedCount(), refusedN, fp.firstErr, fp.lives, dropped, bs.Refused)
	if !bs.Outbox.Full {
		t.Errorf("drop_newest: Status().Bridge.Outbox.Full is false while refusing")
	}
	// Each connection but the last ended with a refusal.
	if dropped < uint64(fp.lives-1) || dropped > refusedN || dropped == 0 {
		t.Errorf("drop_newest: full_newest counts %d refusals; the publisher lost %d connections and has %d messages unacknowledged", dropped, fp.lives-1, refusedN)
	}
	if bs.Refused != dropped {
		t.Errorf("drop_newest: the bridge counted %d refused, the outbox %d full_newest", bs.Refused, dropped)
	}
	drain(t, gw, px, sub)
	got := sub.snapshot()
	// Every acknowledged message arrives, and they are the oldest: per
	// topic 1..k.
	checkSeqs(t, got, nil, acceptance{want: fp.acked, consecutive: true})
	// What was stored is a prefix of what was published: nothing after a
	// refused message may be stored (it would overtake the refused one when
	// the publisher resends). A few unacknowledged ones may be in it — the
	// PUBACKs written just before the disconnect can be lost with it — but
	// never one after a hole.
	published := fp.sent
	arrived := make([]bool, published)
	for ti, topic := range storeTopics {
		for _, s := range got[topic] {
			if g := int(s-1)*len(storeTopics) + ti; g < published {
				arrived[g] = true
			}
		}
	}
	for g := 1; g < published; g++ {
		if arrived[g] && !arrived[g-1] {
			ti := (g - 1) % len(storeTopics)
			t.Errorf("drop_newest: %s %d arrived but %s %d, published before it, did not: a refused message was overtaken",
				storeTopics[g%len(storeTopics)], g/len(storeTopics)+1, storeTopics[ti], (g-1)/len(storeTopics)+1)
			break
		}
	}
}

func checkBlock(t *testing.T, gw *gateway.Gateway, px *netproxy.Proxy, sub *seqSub, fp *fullPub) {
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = fp.run(1)
	}()
	// Blocked: an append waits for space, and every message accepted before
	// it (stored within max_bytes) has had its PUBACK.
	waitUntil(t, 30*time.Second, "the outbox to block the publisher", func() bool {
		st := gw.Status().Bridge.Outbox
		return st.Blocked > 0 && uint64(fp.ackedCount()) == st.Appended
	})
	held := fp.ackedCount()
	// Held back means no PUBACK at all while full: watch for a while.
	timer := time.NewTimer(500 * time.Millisecond)
	select {
	case <-done:
		t.Fatalf("block: the publisher finished all %d messages with the buffer full and the link cut", fp.n)
	case <-timer.C:
	}
	if now := fp.ackedCount(); now != held {
		t.Errorf("block: %d PUBACKs arrived while the buffer was full", now-held)
	}
	st := gw.Status().Bridge.Outbox
	if !st.Full || held >= fp.n || st.Appended != uint64(held) {
		t.Errorf("block: full %v, %d of %d acknowledged, %d accepted while blocked", st.Full, held, fp.n, st.Appended)
	}
	// Appends are weighed by their records; the header of a segment begun
	// by rotation is not, so allow a few bytes over.
	if st.Bytes > 256<<10+64 {
		t.Errorf("block: %d bytes on disk, over max_bytes 256KiB", st.Bytes)
	}
	t.Logf("block: %d of %d messages acknowledged before the buffer filled; blocked appends %d", held, fp.n, st.Blocked)
	px.Restore()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("block: the publisher is still held back 60s after the link returned (%d acknowledged)", fp.ackedCount())
	}
	if runErr != nil {
		t.Fatal(runErr)
	}
	if fp.lives != 1 || len(fp.unacked) != 0 {
		t.Errorf("block: the publisher was disconnected or refused: %d connections, unacknowledged %v", fp.lives, fp.unacked)
	}
	drain(t, gw, px, sub)
	want := map[string][]uint64{}
	for i := 0; i < fp.n; i++ {
		topic := storeTopics[i%len(storeTopics)]
		want[topic] = append(want[topic], uint64(i/len(storeTopics)+1))
	}
	checkSeqs(t, sub.snapshot(), nil, acceptance{want: want, consecutive: true})
	if d := gw.Status().Bridge.Outbox.Dropped; d["full_oldest"]+d["full_newest"] != 0 {
		t.Errorf("block: messages dropped: %v", d)
	}
}
