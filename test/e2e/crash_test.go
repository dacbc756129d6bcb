package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/netproxy"
	"github.com/edgegw/edgegw/internal/testenv"
)

// TestCrashQoS1 proves QoS 1 survives kill -9: the real binary, with its
// data_dir kept, is killed with SIGKILL at random moments at least 50 times
// while a local publisher streams QoS 1 messages (some kills with the link
// cut or reset as well), and during backlog drains (the link cut while
// messages pile up, restored, and the gateway killed while it drains).
// Nothing whose PUBACK the publisher received may be missing upstream, and
// first appearances stay in order per topic. With the default memory
// window, kills with the link up land while messages wait in memory for
// their upstream PUBACK (acknowledged locally only once it came).
func TestCrashQoS1(t *testing.T) { crashRun(t, 1, "") }

// TestCrashQoS1Spilling is the same run with a memory window that spills
// all the time: messages wait 2 ms at most for their upstream PUBACK and
// the window holds 8 KiB, so kills land while messages are in flight and
// half spilled (some acknowledged locally by their PUBACK, some by their
// spill), and while a spill is being written.
func TestCrashQoS1Spilling(t *testing.T) {
	crashRun(t, 1, "[buffer]\nspill_after = \"2ms\"\nmemory_bytes = \"8KiB\"\n")
}

// crashRun is the crash-and-cut run shared by QoS 1 and QoS 2; extra is
// added to the gateway's configuration.
func crashRun(t *testing.T, qos byte, extra string) {
	testenv.Integration(t, "a real Mosquitto and the whole gateway (end to end)")
	streamKills, drainKills := 36, 14
	rate := 600.0
	if testing.Short() {
		rate = 1000
	}
	f := pki(t)
	up := upstream(t, f)
	px, err := netproxy.New(up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	sub := subscribeSeqs(t, f, up.Addr(), qos)
	brokerAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(mosquittotest.FreePort(t)))
	gw := newGwProc(t, storeConfig(t, f, t.TempDir(), brokerAddr, px.Addr(), int(qos), extra), brokerAddr)
	gw.start()

	tl := newTimeline()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("timeline (kills, link breaks, publisher connections):\n%s", tl)
			t.Logf("upstream mosquitto log kept in %s", keepLog(t, "mosquitto-upstream.log", up.Log()))
		}
	})
	pub := newCrashPub(brokerAddr, fmt.Sprintf("pub-crash-q%d", qos), qos, rate)
	pub.tl = tl
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); pub.run(ctx) }()
	stopPub := func() { cancel(); wg.Wait() }
	defer stopPub()

	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	kills, linkBreaks := 0, 0
	restart := func() {
		gw.kill()
		kills++
		tl.add("kill %d (gateway start %d follows)", kills, gw.starts+1)
		gw.start()
	}
	// During the stream: kill at a random moment of each life; now and then
	// break the link first, so some kills find messages in flight upstream.
	for i := 0; i < streamKills; i++ {
		sleepCtx(ctx, time.Duration(30+rng.IntN(400))*time.Millisecond)
		switch rng.IntN(6) {
		case 0:
			px.Cut()
			linkBreaks++
			tl.add("link cut")
			sleepCtx(ctx, time.Duration(rng.IntN(200))*time.Millisecond)
		case 1:
			px.Reset()
			linkBreaks++
			tl.add("link reset")
			sleepCtx(ctx, time.Duration(rng.IntN(200))*time.Millisecond)
		}
		restart()
		px.Restore()
		tl.add("link restored")
	}
	// During backlog drains: the link is cut while messages pile up, then
	// restored, and the gateway is killed while it drains.
	for i := 0; i < drainKills; i++ {
		px.Cut()
		linkBreaks++
		tl.add("drain %d: link cut", i)
		if qos == 1 && !pub.waitAcked(300, 20*time.Second) {
			t.Fatalf("drain %d: the publisher got no 300 acknowledgements within 20s with the link cut", i)
		}
		if qos == 2 {
			sleepCtx(ctx, 500*time.Millisecond) // ~300 messages pile up
		}
		px.Restore()
		tl.add("drain %d: link restored", i)
		sleepCtx(ctx, time.Duration(rng.IntN(300))*time.Millisecond)
		restart()
	}
	px.Restore()
	sleepCtx(ctx, 500*time.Millisecond) // a last stretch of the stream on a gateway that stays up
	stopPub()

	acked, published, lives := pub.snapshot()
	want, what := acked, "acknowledged"
	if qos == 2 {
		// The careful publisher resends what it holds when it connects; with
		// the publisher stopped, one more connection finishes those flows.
		c := localClient(brokerAddr, pub.id, false, pub.store)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("final publisher connect: %v", tok.Error())
		}
		waitUntil(t, 60*time.Second, "the publisher's in-flight QoS 2 flows to complete", func() bool { return pub.store.outbound() == 0 })
		c.Disconnect(100)
		want, what = published, "published"
	}
	total := 0
	for _, s := range want {
		total += len(s)
	}
	t.Logf("%d kills (%d with the link broken too), %d publisher connections; %d messages %s", kills, linkBreaks, lives, total, what)
	tl.add("publisher stopped: %d messages %s; waiting for them upstream", total, what)
	ok := sub.waitFor(120*time.Second, func(got map[string][]uint64) bool { return haveAll(got, want) })
	gw.stop()
	sub.barrier(t, qos)
	sub.mu.Lock()
	bad := sub.bad
	sub.mu.Unlock()
	checkSeqs(t, sub.snapshot(), bad, acceptance{want: want, exactlyOnce: qos == 2, consecutive: qos == 2})
	if !ok {
		t.Errorf("not every %s message arrived within 120s of the last kill", what)
	}
	if kills < 50 {
		t.Errorf("only %d kills", kills)
	}
}
