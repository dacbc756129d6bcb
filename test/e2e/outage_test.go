package e2e

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/netproxy"
	"github.com/edgegw/edgegw/internal/testenv"
)

// TestLinkCutsQoS1 proves QoS 1 survives link cuts: the gateway talks to a
// real Mosquitto with mutual TLS through a proxy that cuts (FIN), resets
// (RST) and stalls the link at random moments, at least 200 times, while a
// local publisher sends 20,000 QoS 1 messages on three topics. The upstream
// subscriber (persistent session, straight to Mosquitto) must see every
// number of every topic, first appearances in order. The bridge's counters
// must show the link going down and coming back for every cut.
func TestLinkCutsQoS1(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	const total = 20000
	minBreaks := 200
	rate := 800.0 // messages per second, so the stream spans the cuts
	if testing.Short() {
		rate = 2000
	}
	f := pki(t)
	up := upstream(t, f)
	px, err := netproxy.New(up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	sub := subscribeSeqs(t, f, up.Addr(), 1)
	gw, _ := runGateway(t, storeConfig(t, f, t.TempDir(), "127.0.0.1:0", px.Addr(), 1, ""))
	waitUntil(t, 20*time.Second, "the upstream link", func() bool { return gw.Status().Bridge.LinkUp })

	pub := localClient(gw.BrokerAddr(), "pub-cuts", true, nil)
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local publisher connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)

	// The publisher: round robin over the topics, paced, a window of
	// tokens; every message must get its PUBACK (the local link is never
	// broken in this test).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	want := map[string][]uint64{}
	pubErr := make(chan error, 1)
	var pubWG sync.WaitGroup
	pubWG.Add(1)
	go func() {
		defer pubWG.Done()
		pubErr <- publishPaced(ctx, pub, total, rate, 1, want)
	}()
	pubDone := make(chan struct{})
	go func() { pubWG.Wait(); close(pubDone) }()

	// The breaker: wait for a fresh session, let it run a random moment,
	// break it, restore.
	rng := rand.New(rand.NewPCG(3, uint64(time.Now().UnixNano())))
	var cuts, resets, shortStalls, longStalls int
	kills := 0                                      // breaks that must end a session
	lastConnects := gw.Status().Bridge.Connects - 1 // the session that is up is fresh
	start := time.Now()
	for i := 0; ; i++ {
		done := false
		select {
		case <-pubDone:
			done = true
		default:
		}
		if done && cuts+resets+shortStalls+longStalls >= minBreaks {
			break
		}
		waitUntil(t, 20*time.Second, "a new upstream session", func() bool { return gw.Status().Bridge.Connects > lastConnects })
		lastConnects = gw.Status().Bridge.Connects
		sleepCtx(ctx, time.Duration(rng.IntN(60))*time.Millisecond)
		switch k := rng.IntN(100); {
		case k < 45:
			px.Cut()
			cuts++
			kills++
		case k < 90:
			px.Reset()
			resets++
			kills++
		case k < 97:
			// A stall shorter than the keepalive allows: the session
			// survives and carries on where it stopped.
			px.Stall()
			shortStalls++
			sleepCtx(ctx, time.Duration(50+rng.IntN(250))*time.Millisecond)
			px.Restore()
			lastConnects-- // no new session to wait for
			continue
		default:
			// A stall the keepalive must notice (1.5 × 1s with nothing heard).
			downs := gw.Status().Bridge.LinkDowns
			px.Stall()
			longStalls++
			kills++
			waitUntil(t, 15*time.Second, "the stalled link to be declared down", func() bool { return gw.Status().Bridge.LinkDowns > downs })
		}
		sleepCtx(ctx, time.Duration(rng.IntN(40))*time.Millisecond)
		px.Restore()
	}
	px.Restore()
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}
	breakTime := time.Since(start)

	ok := sub.waitFor(90*time.Second, func(got map[string][]uint64) bool { return haveAll(got, want) })
	sub.mu.Lock()
	bad := sub.bad
	sub.mu.Unlock()
	checkSeqs(t, sub.snapshot(), bad, acceptance{want: want, consecutive: true})
	if !ok {
		t.Errorf("not everything arrived within 90s of the last break")
	}
	// The last break may have ended the last session: wait for the next.
	waitUntil(t, 20*time.Second, "the upstream link after the last break", func() bool {
		s := gw.Status().Bridge
		return s.LinkUp && s.Connects > s.LinkDowns
	})
	st := gw.Status().Bridge
	t.Logf("%d breaks in %s: %d cuts, %d resets, %d short stalls, %d long stalls; bridge: connects %d, link downs %d, connect failures %d, sent %d, acked %d, replayed %d",
		cuts+resets+shortStalls+longStalls, breakTime.Round(time.Millisecond), cuts, resets, shortStalls, longStalls,
		st.Connects, st.LinkDowns, st.ConnectFailures, st.SentPublish, st.Acked, st.Outbox.Replayed)
	if st.LinkDowns < uint64(kills) {
		t.Errorf("the bridge counted %d link downs for %d cuts, resets and long stalls", st.LinkDowns, kills)
	}
	if st.Connects < st.LinkDowns || st.Connects < uint64(kills)+1 {
		t.Errorf("the bridge counted %d connects for %d link downs and %d breaks", st.Connects, st.LinkDowns, kills)
	}
	if st.Outbox.Replayed == 0 {
		t.Errorf("nothing was replayed after %d breaks: the cuts did not hit messages in flight", kills)
	}
	if st.Outbox.Dropped["full_oldest"]+st.Outbox.Dropped["corrupt"]+st.Outbox.Dropped["expired"] != 0 {
		t.Errorf("the outbox dropped messages: %v", st.Outbox.Dropped)
	}
}
