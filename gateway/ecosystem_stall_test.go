package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/broker"
	"github.com/edgegw/edgegw/gateway/sparkplug"
)

// TestSparkplugStalledUpstreamKeepsPubacks: with protect_topics off a local
// program may publish on a device's topic; the Sparkplug node's handler for
// it must return at once. With the upstream write of the first DDATA
// stalled, every QoS 1 publish of the local client is still acknowledged
// (before the hand-off, the handler held the client's read loop and the
// second PUBACK never came); released, every reading goes up in order.
func TestSparkplugStalledUpstreamKeepsPubacks(t *testing.T) {
	const msgs = 5
	bk, err := broker.New(broker.Options{Listen: "127.0.0.1:0", AllowAnonymous: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := bk.Start(); err != nil {
		t.Fatal(err)
	}
	defer bk.Close()
	log := slog.New(slog.DiscardHandler)
	e := &ecosystem{log: log, bk: bk, topic: map[string]string{"door": "readings/door"}}
	e.sp = sparkplug.New(sparkplug.Options{
		GroupID: "g", EdgeNodeID: "n", StateFile: filepath.Join(t.TempDir(), "bdseq"),
		Devices: []sparkplug.Device{{Name: "door", Type: "sim"}}, Logger: log,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, err := e.startSparkplug(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); stop() }()

	entered, release := make(chan struct{}), make(chan struct{})
	up := make(chan string, msgs)
	first := true
	e.sp.Will()
	e.sp.OnConnect(func(topic string, payload []byte, _ byte, _ bool) error {
		if !strings.Contains(topic, "/DDATA/") {
			return nil
		}
		if first {
			first = false
			close(entered)
			<-release
		}
		p, err := sparkplug.Decode(payload)
		if err != nil || len(p.Metrics) == 0 {
			return fmt.Errorf("undecodable DDATA: %v", err)
		}
		up <- fmt.Sprint(p.Metrics[0].Value)
		return nil
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + bk.Addr("tcp").String()).SetClientID("local-pub").
		SetAutoReconnect(false).SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local publisher connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	payload := func(i int) string {
		return fmt.Sprintf(`{"gateway":"gw-01","device":"door","type":"sim","seq":%d,"ts":"2026-12-01T00:00:00.000Z","uid":"U%d"}`, i, i)
	}
	if tok := c.Publish("readings/door", 1, false, payload(0)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("first publish not acknowledged: %v", tok.Error())
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first reading did not reach the upstream write")
	}
	for i := 1; i < msgs; i++ {
		if tok := c.Publish("readings/door", 1, false, payload(i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d not acknowledged within 5s while the upstream write is stalled (err %v)", i, tok.Error())
		}
	}
	close(release)
	for i := range msgs {
		select {
		case got := <-up:
			if want := fmt.Sprintf("U%d", i); got != want {
				t.Fatalf("DDATA %d carries uid %s, want %s", i, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d readings went up after the release", i, msgs)
		}
	}
	if d := e.sp.Stats().QueueDropped; d != 0 {
		t.Errorf("%d readings dropped, want none (the queue holds %d)", d, sparkplug.DefaultQueueSize)
	}
}
