package broker

import (
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// heapAllocated is the bytes fn allocates on the heap.
func heapAllocated(fn func()) uint64 {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	fn()
	runtime.ReadMemStats(&m1)
	return m1.TotalAlloc - m0.TotalAlloc
}

// TestClientQueues: in-process clients are made without mochi's outbound
// queue (8,192 pointers, 64 KiB each, never used by a client without a
// connection), network clients with it; deliveries reach both kinds, a
// burst to a network subscriber is queued rather than dropped, and mochi
// republishes $SYS no more than every sysInterval seconds.
func TestClientQueues(t *testing.T) {
	const clients = 16
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"in-process clients made before openNetworkQueues cost under 8 KiB each, those after at least 64 KiB", func(t *testing.T) {
			srv := newMochiServer(1<<20, slog.New(slog.NewTextHandler(io.Discard, nil)).Handler())
			inline := heapAllocated(func() {
				for range clients {
					newInlineClient(srv, "c")
				}
			})
			openNetworkQueues(srv)
			network := heapAllocated(func() {
				for range clients {
					newInlineClient(srv, "c")
				}
			})
			if per := inline / clients; per >= 8<<10 {
				t.Errorf("an in-process client allocates %d B, want < 8 KiB (mochi's outbound queue made after all?)", per)
			}
			if per := network / clients; per < 64<<10 {
				t.Errorf("a client after openNetworkQueues allocates %d B, want >= 64 KiB (mochi's default queue of 8,192)", per)
			}
		}},
		{"the gateway's own in-process subscription receives a publish", func(t *testing.T) {
			b := startBroker(t, Options{})
			got := make(chan Message, 1)
			cancel, err := b.Subscribe("local/#", func(m Message) {
				select {
				case got <- m:
				default:
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			defer cancel()
			pub := client(t, b, "pub")
			if tok := pub.Publish("local/x", 1, false, "hello"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
			select {
			case m := <-got:
				if m.Topic != "local/x" || string(m.Payload) != "hello" {
					t.Fatalf("got %q %q, want local/x hello", m.Topic, m.Payload)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the in-process subscriber got nothing in 5 s")
			}
		}},
		{"a burst of 2,000 QoS 0 messages to a network subscriber arrives whole (its queue is not 0)", func(t *testing.T) {
			const n = 2000
			b := startBroker(t, Options{})
			sub := client(t, b, "sub")
			var count atomic.Int64
			all := make(chan struct{})
			if tok := sub.Subscribe("burst/#", 0, func(_ paho.Client, _ paho.Message) {
				if count.Add(1) == n {
					close(all)
				}
			}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			for i := range n {
				if err := b.Deliver(Message{Topic: "burst/x", Payload: []byte{byte(i)}}); err != nil {
					t.Fatalf("deliver %d: %v", i, err)
				}
			}
			select {
			case <-all:
			case <-time.After(10 * time.Second):
				t.Fatalf("%d of %d messages arrived in 10 s", count.Load(), n)
			}
		}},
		{"$SYS is not republished every second", func(t *testing.T) {
			b := startBroker(t, Options{})
			sub := client(t, b, "sys")
			var count atomic.Int64
			if tok := sub.Subscribe("$SYS/broker/uptime", 0, func(_ paho.Client, _ paho.Message) { count.Add(1) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			// The absence of an event: a measured span. At mochi's default
			// of one second, two or three would arrive in it.
			time.Sleep(2500 * time.Millisecond)
			if n := count.Load(); n > 1 {
				t.Fatalf("%d $SYS/broker/uptime messages in 2.5 s, want at most 1 (every %d s)", n, sysInterval)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}
