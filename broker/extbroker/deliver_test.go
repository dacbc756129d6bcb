package extbroker

import (
	"errors"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/netproxy"
)

// TestDeliverNeverWaits: Deliver runs on the bridge's reader, so with the
// external broker stalled (connection open, no bytes moving) it returns at
// once: the first message waits for its acknowledgement on the client's own
// goroutine, DeliverQueue more are queued, the next are refused with
// ErrDeliverQueueFull and counted. Once the broker moves again every queued
// message reaches a local subscriber, in order.
func TestDeliverNeverWaits(t *testing.T) {
	const queue, refused = 4, 2
	mq := mosquittotest.Start(t, mosquittotest.Options{})
	px, err := netproxy.New(mq.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	// A PublishTimeout far above the bound below: a Deliver that waited
	// for the broker would be seen.
	b := startWith(t, Options{Addr: px.Addr(), DeliverQueue: queue, PublishTimeout: 30 * time.Second}, nil)
	waitUntil(t, "the connection", func() bool { return b.Counters().Connected })
	lc := localClient(t, mq.Addr())
	seen := make(chan string, queue+refused+1)
	if tok := lc.Subscribe("relays/#", 1, func(_ paho.Client, m paho.Message) { seen <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	px.Stall()
	msg := func(i int) broker.Message {
		return broker.Message{Topic: "relays/door/set", Payload: []byte(fmt.Sprint(i)), QoS: 1}
	}
	errs := make(chan error, queue+refused+1)
	go func() {
		errs <- b.Deliver(msg(0))
		// The client's goroutine takes the first one and waits for its
		// PUBACK; then the queue is empty and holds exactly queue more.
		deadline := time.Now().Add(10 * time.Second)
		for len(b.down) > 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // polls the queue's length: no event tells that the goroutine took one
		}
		for i := 1; i <= queue+refused; i++ {
			errs <- b.Deliver(msg(i))
		}
	}()
	for i := 0; i <= queue+refused; i++ {
		select {
		case err := <-errs:
			switch full := errors.Is(err, ErrDeliverQueueFull); {
			case i <= queue && err != nil:
				t.Errorf("Deliver %d: %v, want it queued", i, err)
			case i > queue && !full:
				t.Errorf("Deliver %d: %v, want ErrDeliverQueueFull", i, err)
			}
		case <-time.After(10 * time.Second):
			px.Restore()
			t.Fatalf("Deliver %d waited for the stalled broker", i)
		}
	}
	if got := b.Counters().DeliverDropped; got != refused {
		t.Errorf("DeliverDropped = %d, want %d", got, refused)
	}
	px.Restore()
	for i := 0; i <= queue; i++ {
		select {
		case p := <-seen:
			if p != fmt.Sprint(i) {
				t.Fatalf("local subscriber got %q as message %d, want %d (order per topic)", p, i, i)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("only %d of %d queued messages reached the local subscriber after the broker moved again", i, queue+1)
		}
	}
}
