package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRealLinks is acceptance 4 of the cloud-limits issue: Toxiproxy in
// front of a real Mosquitto (mutual TLS) plays cellular and broken links;
// 5,000 QoS 1 messages go through each with two cuts in between, and none
// is lost or reordered.
func TestRealLinks(t *testing.T) {
	if testing.Short() {
		t.Skip("several minutes of slow links")
	}
	const total = 5000
	type toxic struct {
		name, typ, stream string
		attrs             map[string]any
	}
	cases := []struct {
		name      string
		keepalive string
		toxics    []toxic // for the whole run
		// during, when set, runs while the messages go (fault episodes).
		during func(t *testing.T, x *toxi, proxy string)
	}{
		{name: "LTE-M: 600 ms ± 50 ms each way, 30 KB/s", keepalive: "5s", toxics: []toxic{
			{"lat", "latency", "", map[string]any{"latency": 600, "jitter": 50}},
			{"bw", "bandwidth", "", map[string]any{"rate": 30}},
		}},
		{name: "GPRS: 1.5 s each way, 5 KB/s", keepalive: "10s", toxics: []toxic{
			{"lat", "latency", "", map[string]any{"latency": 1500, "jitter": 100}},
			{"bw", "bandwidth", "", map[string]any{"rate": 5}},
		}},
		{name: "TLS records sliced into small segments", keepalive: "2s", toxics: []toxic{
			{"slice", "slicer", "", map[string]any{"average_size": 8, "size_variation": 6, "delay": 20}},
		}},
		{name: "a link that dies after 20 KB", keepalive: "2s", toxics: []toxic{
			{"limit", "limit_data", "upstream", map[string]any{"bytes": 20000}},
		}},
		{name: "connections reset mid-packet", keepalive: "2s", during: func(t *testing.T, x *toxi, proxy string) {
			for i := 0; i < 3; i++ {
				x.toxic(proxy, "reset", "reset_peer", "upstream", map[string]any{"timeout": 150})
				sleepCtx(context.Background(), 700*time.Millisecond)
				x.untoxic(proxy, "reset", "upstream")
				sleepCtx(context.Background(), 500*time.Millisecond)
			}
		}},
	}
	f := pki(t)
	up := upstream(t, f)
	x := startToxiproxy(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := "p" + string(rune('a'+i))
			proxy := x.proxy(name, up.Addr())
			sub := subscribeSeqs(t, f, up.Addr(), 1)
			cfg := cloudConfig(t, f, t.TempDir(), "127.0.0.1:0", proxy, "3.1.1", 1, `connect_timeout = "30s"`)
			cfg = strings.Replace(cfg, `keepalive = "2s"`, `keepalive = "`+tc.keepalive+`"`, 1)
			for _, tx := range tc.toxics {
				x.toxic(name, tx.name, tx.typ, tx.stream, tx.attrs)
			}
			gw, _ := runGateway(t, cfg)
			waitUntil(t, 60*time.Second, "the upstream link", func() bool { return gw.Status().Bridge.LinkUp })
			pub := localClient(gw.BrokerAddr(), "pub-"+name, true, nil)
			if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("local publisher connect: %v", tok.Error())
			}
			defer pub.Disconnect(100)
			want := map[string][]uint64{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pubErr := make(chan error, 1)
			start := time.Now()
			go func() { pubErr <- publishPaced(ctx, pub, total, 1000, 1, want) }()
			// Two cuts (the proxy closes every connection and refuses
			// new ones for 500 ms) while the messages go.
			for c := 0; c < 2; c++ {
				sleepCtx(ctx, 1500*time.Millisecond)
				x.enable(name, false)
				sleepCtx(ctx, 500*time.Millisecond)
				x.enable(name, true)
			}
			if tc.during != nil {
				tc.during(t, x, name)
			}
			if err := <-pubErr; err != nil {
				t.Fatal(err)
			}
			ok := sub.waitFor(240*time.Second, func(got map[string][]uint64) bool { return haveAll(got, want) })
			took := time.Since(start)
			sub.mu.Lock()
			bad := sub.bad
			sub.mu.Unlock()
			checkSeqs(t, sub.snapshot(), bad, acceptance{want: want, consecutive: true})
			if !ok {
				t.Fatalf("not everything arrived within 240s")
			}
			st := gw.Status().Bridge
			t.Logf("%d messages in %s; connects %d, flaps %d, link downs %d, resent %d", total, took.Round(100*time.Millisecond), st.Connects, st.Flaps, st.LinkDowns, st.Outbox.Replayed)
			if n := st.Outbox.Dropped["full_oldest"] + st.Outbox.Dropped["corrupt"]; n != 0 {
				t.Errorf("the outbox dropped %d", n)
			}
		})
	}
}

// TestBlackHoleDetected: a link that stops carrying bytes with no FIN or
// RST (half-open) is declared down within 1.5 × keepalive, and the gateway
// carries on once the link works again.
func TestBlackHoleDetected(t *testing.T) {
	const keepalive = 2 * time.Second
	f := pki(t)
	up := upstream(t, f)
	x := startToxiproxy(t)
	proxy := x.proxy("hole", up.Addr())
	sub := subscribeSeqs(t, f, up.Addr(), 1)
	gw, _ := runGateway(t, cloudConfig(t, f, t.TempDir(), "127.0.0.1:0", proxy, "3.1.1", 1, ""))
	waitUntil(t, 20*time.Second, "the upstream link", func() bool { return gw.Status().Bridge.LinkUp })
	downs := gw.Status().Bridge.LinkDowns
	x.toxic("hole", "hole", "timeout", "", map[string]any{"timeout": 0})
	cut := time.Now()
	waitUntil(t, 10*time.Second, "the black hole to be noticed", func() bool { return gw.Status().Bridge.LinkDowns > downs })
	took := time.Since(cut)
	t.Logf("black hole noticed after %s (keepalive %s)", took.Round(10*time.Millisecond), keepalive)
	// The read deadline is 1.5 × keepalive after the last byte heard,
	// which came before the hole opened; the margin is for a loaded machine.
	if took > keepalive*3/2+time.Second {
		t.Errorf("the black hole took %s to notice, want within 1.5 × keepalive (%s)", took, keepalive*3/2)
	}
	if cause := gw.Status().Bridge.LastError; !strings.Contains(cause, "nothing heard from the server for 3s") {
		t.Errorf("the black hole is explained as %q", cause)
	}
	x.untoxic("hole", "hole", "")
	pub := localClient(gw.BrokerAddr(), "pub-hole", true, nil)
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local publisher connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	want := map[string][]uint64{}
	if err := publishPaced(context.Background(), pub, 300, 1000, 1, want); err != nil {
		t.Fatal(err)
	}
	if !sub.waitFor(60*time.Second, func(got map[string][]uint64) bool { return haveAll(got, want) }) {
		t.Fatalf("nothing goes after the black hole ended")
	}
}

// TestLongLinkThroughput measures (does not assert: a figure for the
// benchmarks) the drain rate of a backlog over a 600 ms-each-way link
// against what the window allows, min(window, Receive Maximum) / RTT.
func TestLongLinkThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("a measurement")
	}
	const n, window = 2000, 200
	const rtt = 1200 * time.Millisecond
	f := pki(t)
	up := upstream(t, f)
	x := startToxiproxy(t)
	proxy := x.proxy("long", up.Addr())
	x.toxic("long", "lat", "latency", "", map[string]any{"latency": 600})
	sub := subscribeSeqs(t, f, up.Addr(), 1)
	cfg := cloudConfig(t, f, t.TempDir(), "127.0.0.1:0", proxy, "3.1.1", 1, "inflight = 200\nconnect_timeout = \"30s\"")
	cfg = strings.Replace(cfg, `keepalive = "2s"`, `keepalive = "10s"`, 1)
	gw, _ := runGateway(t, cfg)
	waitUntil(t, 60*time.Second, "the upstream link", func() bool { return gw.Status().Bridge.LinkUp })
	x.enable("long", false)
	waitUntil(t, 30*time.Second, "the link down", func() bool { return !gw.Status().Bridge.LinkUp })
	pub := localClient(gw.BrokerAddr(), "pub-long", true, nil)
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local publisher connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	want := map[string][]uint64{}
	if err := publishPaced(context.Background(), pub, n, 5000, 1, want); err != nil {
		t.Fatal(err)
	}
	x.enable("long", true)
	waitUntil(t, 60*time.Second, "the link up", func() bool { return gw.Status().Bridge.LinkUp })
	up0 := time.Now()
	if !sub.waitFor(120*time.Second, func(got map[string][]uint64) bool { return haveAll(got, want) }) {
		t.Fatalf("the backlog did not drain within 120s")
	}
	took := time.Since(up0)
	rate := float64(n) / took.Seconds()
	ideal := float64(window) / rtt.Seconds()
	t.Logf("LONG-LINK THROUGHPUT: %d messages in %s over 600 ms each way: %.0f msg/s; window/RTT = %d/%s = %.0f msg/s; ratio %.2f (target >= 0.80)",
		n, took.Round(10*time.Millisecond), rate, window, rtt, ideal, rate/ideal)
}
