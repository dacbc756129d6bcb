package extbroker

import (
	"log/slog"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/internal/mosquittotest"
)

// asyncRecorder acknowledges every message from another goroutine, as the
// outbox's committer does, without storing anything: the cost measured is
// the external broker's round trip and our ordered manual acks.
type asyncRecorder struct {
	got chan struct{}
	q   chan func(error)
}

func (r *asyncRecorder) Wants(string) bool { return true }
func (r *asyncRecorder) Accept(_ broker.Message, done func(error)) {
	if done != nil {
		r.q <- done
	}
	r.got <- struct{}{}
}

// BenchmarkLocalPublisherQoS1 is a program on the board publishing QoS 1
// 100-byte messages (paho, up to 256 in flight) through Mosquitto into the
// gateway's out-rule subscription, each acknowledged once "durable".
func BenchmarkLocalPublisherQoS1(b *testing.B) {
	mq := mosquittotest.Start(b, mosquittotest.Options{})
	rec := &asyncRecorder{got: make(chan struct{}, 1024), q: make(chan func(error), 1024)}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case d := <-rec.q:
				d(nil)
			case <-stop:
				return
			}
		}
	}()
	bk, err := New(Options{Addr: mq.Addr(), ClientID: "edgegw-bench-local", Filters: []string{"readings/#"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	bk.SetInterceptor(rec)
	if err := bk.Start(); err != nil {
		b.Fatal(err)
	}
	defer bk.Close()
	deadline := time.Now().Add(10 * time.Second)
	for bk.Stats().Subscriptions != 1 {
		if time.Now().After(deadline) {
			b.Fatal("no subscription")
		}
		time.Sleep(10 * time.Millisecond)
	}
	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + mq.Addr()).SetClientID("bench-pub"))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer pub.Disconnect(50)
	payload := make([]byte, 100)
	window := make(chan paho.Token, 256)
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			window <- pub.Publish("readings/bench", 1, false, payload)
		}
		close(window)
	}()
	go func() {
		for tok := range window {
			tok.Wait()
		}
	}()
	timeout := time.After(60 * time.Second)
	for i := 0; i < b.N; i++ {
		select {
		case <-rec.got:
		case <-timeout:
			b.Fatalf("only %d of %d messages arrived", i, b.N)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
	deadline = time.Now().Add(10 * time.Second)
	for bk.acks.pending() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}
