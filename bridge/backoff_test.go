package bridge

import (
	"errors"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestBackoffPolicy: the wait after each kind of session end, with the
// random part pinned to its smallest (0) and largest (n-1) value.
func TestBackoffPolicy(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 2 * time.Second
	refused := &RefusedError{Code: 5}
	cases := []struct {
		name     string
		ends     []sessionEnd
		smallest time.Duration // the last wait with the random part at 0
		largest  time.Duration // and at its maximum
	}{
		{"stable link comes back at once", []sessionEnd{{connected: true, up: time.Minute, sent: true, acked: true}}, 0, lo},
		{"idle stable link (nothing sent) is not a flap", []sessionEnd{{connected: true, up: time.Minute}}, 0, lo},
		{"flap right after CONNACK grows the backoff", []sessionEnd{{connected: true, up: 100 * time.Millisecond}, {connected: true, up: 100 * time.Millisecond}}, 200 * time.Millisecond, 400 * time.Millisecond},
		{"long session that acknowledged nothing is a flap", []sessionEnd{{connected: true, up: time.Hour, sent: true}}, 100 * time.Millisecond, 200 * time.Millisecond},
		{"flaps reach the ceiling", []sessionEnd{{connected: true}, {connected: true}, {connected: true}, {connected: true}, {connected: true}, {connected: true}}, hi / 2, hi},
		{"a refusal is retried at the ceiling", []sessionEnd{{err: refused}}, hi / 2, hi},
		{"a stable session after flaps starts over", []sessionEnd{{connected: true}, {connected: true}, {connected: true, up: time.Minute}}, 0, lo},
		{"a failed dial is full jitter", []sessionEnd{{err: errors.New("refused")}}, 0, 200 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, pick := range []struct {
				name string
				r    func(int64) int64
				want time.Duration
			}{{"smallest", func(int64) int64 { return 0 }, tc.smallest}, {"largest", func(n int64) int64 { return n - 1 }, tc.largest}} {
				b := backoff{min: lo, max: hi, rand: pick.r}
				var got time.Duration
				for _, e := range tc.ends {
					got = b.next(e.kind())
				}
				if d := got - pick.want; d < -time.Nanosecond || d > time.Nanosecond {
					t.Errorf("%s wait %s, want %s", pick.name, got, pick.want)
				}
			}
		})
	}
}

// TestFlappingBrokerConnectRate: a broker that closes every connection
// 100 ms after its CONNACK sees no more connects than the backoff allows
// (after the k-th flap in a row the wait is at least half of
// min(backoff_min·2^k, backoff_max)), not a reconnect every few
// milliseconds as when every CONNACK started the backoff over.
func TestFlappingBrokerConnectRate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 8s")
	}
	const lo, hi, window = 100 * time.Millisecond, time.Second, 8 * time.Second
	fb := newFakeBroker(t)
	b, ob, _ := testBridge(t, fb.ln.Addr().String(), 5, func(o *Options) { o.BackoffMin, o.BackoffMax = lo, hi })
	appendN(t, ob, "r/t", 1, "1", "2", "3")
	start := time.Now()
	connects := 0
	deadline := time.After(window)
loop:
	for {
		select {
		case fc := <-fb.accepts:
			connects++
			if err := fc.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}}); err != nil {
				t.Fatal(err)
			}
			time.AfterFunc(100*time.Millisecond, func() { fc.nc.Close() }) // the broker's behaviour under test
		case <-deadline:
			break loop
		}
	}
	elapsed := time.Since(start)
	// The most connects the policy allows in elapsed: each cycle is at
	// least 100 ms up plus the smallest wait.
	allowed, spent := 1, time.Duration(0)
	for k := 1; ; k++ {
		c := min(lo<<k, hi)
		spent += 100*time.Millisecond + c/2
		if spent > elapsed {
			break
		}
		allowed++
	}
	st := b.Stats()
	t.Logf("%d connects in %s (policy allows at most %d); flaps %d", connects, elapsed.Round(time.Millisecond), allowed, st.Flaps)
	if connects > allowed {
		t.Errorf("%d connects in %s, the backoff allows at most %d", connects, elapsed.Round(time.Millisecond), allowed)
	}
	if connects < 3 {
		t.Errorf("only %d connects in %s: the bridge stopped trying", connects, elapsed.Round(time.Millisecond))
	}
	if st.Flaps < uint64(connects-1) {
		t.Errorf("flaps %d for %d short sessions", st.Flaps, connects)
	}
}
