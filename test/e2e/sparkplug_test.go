package e2e

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/netproxy"
)

// TestSparkplugEdgeNode is acceptance point 3 of issue 14: the gateway as a
// Sparkplug B edge node on a real Mosquitto (mutual TLS), every message it
// sends decoded by Eclipse Tahu's codec (npm sparkplug-payload): NBIRTH
// carries bdSeq and the NDEATH the broker publishes as the Will after a cut
// carries the same; seq runs 0..255 and wraps on every message but NDEATH,
// starting at 0 with each NBIRTH; readings made during the cut go up after
// the next birth as historical metrics, before the live ones; NCMD
// "Node Control/Rebirth" brings a fresh NBIRTH and DBIRTHs; DCMD drives a
// gpio_out; a clean stop publishes NDEATH with the last bdSeq.
func TestSparkplugEdgeNode(t *testing.T) {
	tahu(t) // install (or skip) first
	out := &gpiotest.Pin{N: "E2E_SP_OUT", Num: 4545, EdgesChan: make(chan pgpio.Level)}
	if err := gpioreg.Register(out); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gpioreg.Unregister(out.N) })
	f := pki(t)
	up := upstream(t, f)
	px, err := netproxy.New(up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	sub := subscribe(t, f, up.Addr(), "spBv1.0/#", 1)
	cfg := gwConfig(t, f, t.TempDir(), "127.0.0.1:0", px.Addr(), `keepalive = "2s"
backoff_min = "10ms"
backoff_max = "100ms"`, topicRule("readings/#", "out", 1)+`[sparkplug]
enabled = true
group_id = "plant1"
[availability]
enabled = true
[[device]]
name = "climate"
type = "sim"
kind = "sensor"
interval = "10ms"
[[device]]
name = "relay"
type = "gpio_out"
topic = "relays/relay"
pin = "E2E_SP_OUT"
initial = "off"
`)
	gw, _, stop := startGateway(t, cfg)
	const node = "spBv1.0/plant1/"
	count := func(ms []paho.Message, from int, typ string) int {
		n := 0
		for _, m := range ms[min(from, len(ms)):] {
			if strings.HasPrefix(m.Topic(), node+typ+"/") || m.Topic() == node+typ {
				n++
			}
		}
		return n
	}
	// Enough DDATA for seq to wrap past 255.
	sub.waitFor(t, 30*time.Second, "NBIRTH and 300 DDATA", func(ms []paho.Message) bool {
		return count(ms, 0, "NBIRTH") >= 1 && count(ms, 0, "DDATA") >= 300
	})

	// Cut the link: the broker publishes NDEATH; readings go on locally.
	local := &received{ch: make(chan struct{}, 1)}
	lc := localClient(gw.BrokerAddr(), "sp-local", true, nil)
	if tok := lc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local connect: %v", tok.Error())
	}
	defer lc.Disconnect(100)
	if tok := lc.Subscribe("readings/climate", 0, func(_ paho.Client, m paho.Message) { local.add(m) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local subscribe: %v", tok.Error())
	}
	mark := len(sub.snapshot())
	px.Cut()
	cutAt := time.Now()
	sub.waitFor(t, 10*time.Second, "NDEATH from the broker", func(ms []paho.Message) bool { return count(ms, mark, "NDEATH") >= 1 })
	waitUntil(t, 10*time.Second, "the gateway to see the link down", func() bool { return !gw.Status().Bridge.LinkUp })
	n0 := len(local.snapshot())
	local.waitFor(t, 10*time.Second, "30 readings during the cut", func(ms []paho.Message) bool { return len(ms) >= n0+30 })
	restoreAt := time.Now()
	px.Restore()
	sub.waitFor(t, 20*time.Second, "a new NBIRTH and live DDATA after the cut", func(ms []paho.Message) bool {
		return count(ms, mark, "NBIRTH") >= 1 && count(ms, mark, "DDATA") >= 60
	})

	// Rebirth on NCMD, encoded by Tahu.
	pub := newPublisher(t, f, up.Addr())
	mark2 := len(sub.snapshot())
	rebirth := tahuEncode(t, `{"timestamp":1,"metrics":[{"name":"Node Control/Rebirth","type":"Boolean","value":true}]}`)
	if tok := pub.Publish(node+"NCMD/gw-01", 0, false, rebirth); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish NCMD: %v", tok.Error())
	}
	sub.waitFor(t, 20*time.Second, "NBIRTH after NCMD rebirth", func(ms []paho.Message) bool {
		return count(ms, mark2, "NBIRTH") >= 1 && count(ms, mark2, "DBIRTH") >= 2
	})

	// DCMD drives the relay.
	on := tahuEncode(t, `{"timestamp":1,"metrics":[{"name":"state","type":"Boolean","value":true}]}`)
	if tok := pub.Publish(node+"DCMD/gw-01/relay", 0, false, on); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish DCMD: %v", tok.Error())
	}
	waitUntil(t, 10*time.Second, "DCMD to drive the relay pin high", func() bool { return out.Read() == pgpio.High })
	sub.waitFor(t, 10*time.Second, "the relay's DDATA with state true", func(ms []paho.Message) bool { return count(ms, mark2, "DDATA/gw-01/relay") >= 1 })

	mark3 := len(sub.snapshot())
	stop()
	sub.waitFor(t, 10*time.Second, "NDEATH on a clean stop", func(ms []paho.Message) bool { return count(ms, mark3, "NDEATH") >= 1 })

	// Decode everything with Tahu and check.
	ms := sub.snapshot()
	var topics []string
	var payloads [][]byte
	for _, m := range ms {
		if strings.HasPrefix(m.Topic(), node) && !strings.Contains(m.Topic(), "CMD/") {
			topics = append(topics, m.Topic())
			payloads = append(payloads, m.Payload())
		}
	}
	dec := tahuDecode(t, topics, payloads)
	typeOf := func(d spDecoded) string { return strings.Split(d.Topic, "/")[2] }
	var (
		prevSeq             = -1
		wrapped             bool
		births, deaths      []int64
		historical, live    int
		histBad, histLate   int
		sawLiveThisConn     bool
		printedDDATA        bool
		connection          int
		relayOn             bool
		bdSeqOfBirth        int64 = -1
		cutHistorical       int
		deathAfterBirthOK   int
		deathAfterBirthMiss int
	)
	for i, d := range dec {
		if d.Error != "" {
			t.Fatalf("message %d on %s: Tahu cannot decode it: %s", i, d.Topic, d.Error)
		}
		typ := typeOf(d)
		if typ == "NDEATH" {
			if d.Payload.Seq != nil {
				t.Errorf("NDEATH %d carries seq %d; the specification gives it none", i, *d.Payload.Seq)
			}
			v, ok := d.metric("bdSeq")
			if !ok {
				t.Fatalf("NDEATH without bdSeq: %s", d.raw)
			}
			deaths = append(deaths, int64(v.(float64)))
			if int64(v.(float64)) == bdSeqOfBirth {
				deathAfterBirthOK++
			} else {
				deathAfterBirthMiss++
				t.Errorf("NDEATH bdSeq %v does not match the NBIRTH before it (%d)", v, bdSeqOfBirth)
			}
			continue
		}
		if d.Payload.Seq == nil {
			t.Fatalf("%s message %d without seq: %s", typ, i, d.raw)
		}
		seq := *d.Payload.Seq
		if typ == "NBIRTH" {
			if seq != 0 {
				t.Errorf("NBIRTH %d has seq %d, want 0", i, seq)
			}
			v, ok := d.metric("bdSeq")
			if !ok {
				t.Fatalf("NBIRTH without bdSeq: %s", d.raw)
			}
			if b := int64(v.(float64)); b != bdSeqOfBirth {
				births = append(births, b)
				bdSeqOfBirth = b
				connection++
			}
			if _, ok := d.metric("Node Control/Rebirth"); !ok {
				t.Errorf("NBIRTH without the Node Control/Rebirth metric")
			}
			sawLiveThisConn = false
		} else {
			if prevSeq < 0 {
				t.Fatalf("%s before any NBIRTH", typ)
			}
			if want := (prevSeq + 1) % 256; seq != want {
				t.Errorf("message %d (%s) seq %d, want %d", i, d.Topic, seq, want)
			}
			if prevSeq == 255 && seq == 0 {
				wrapped = true
			}
		}
		prevSeq = seq
		if typ == "DBIRTH" && strings.HasSuffix(d.Topic, "/climate") {
			for _, m := range d.Payload.Metrics {
				if m.Name == "temperature" && (m.Type != "Double" || m.Properties["engUnit"].Value != "°C") {
					t.Errorf("DBIRTH temperature metric: type %s unit %v, want Double with engUnit °C", m.Type, m.Properties["engUnit"].Value)
				}
			}
		}
		if typ == "DDATA" && strings.HasSuffix(d.Topic, "/relay") {
			if v, _ := d.metric("state"); v == true {
				relayOn = true
			}
		}
		if typ == "DDATA" && strings.HasSuffix(d.Topic, "/climate") {
			h := d.Payload.Metrics[0].IsHistorical
			for _, m := range d.Payload.Metrics {
				if m.IsHistorical != h {
					t.Errorf("DDATA %d mixes historical and live metrics", i)
				}
			}
			if h {
				historical++
				if connection > 2 {
					// The first connection may bring readings made before
					// it was up; the second, those of the cut.
					t.Errorf("historical DDATA in connection %d (only the one after the cut should have any)", connection)
				}
				ts := time.UnixMilli(d.Payload.Metrics[0].Timestamp)
				if connection == 2 && (ts.Before(cutAt.Add(-2*time.Second)) || ts.After(restoreAt.Add(time.Second))) {
					histBad++
				}
				if connection == 2 {
					cutHistorical++
				}
				if sawLiveThisConn {
					histLate++
				}
			} else {
				live++
				sawLiveThisConn = true
				if !printedDDATA && connection == 2 {
					t.Logf("a DDATA as Tahu decodes it:\n%s", d.raw)
					printedDDATA = true
				}
			}
		}
	}
	if !wrapped {
		t.Error("seq never wrapped from 255 to 0")
	}
	if len(births) < 2 || births[1] != (births[0]+1)%256 {
		t.Errorf("bdSeq of the NBIRTHs %v: want the second one after the first", births)
	}
	if len(deaths) < 2 {
		t.Errorf("NDEATHs %v: want one from the cut (the Will) and one from the clean stop", deaths)
	}
	if cutHistorical < 30 {
		t.Errorf("%d historical DDATA after the cut, want at least the 30 readings made during it", cutHistorical)
	}
	if histBad > 0 {
		t.Errorf("%d historical DDATA with a timestamp outside the cut", histBad)
	}
	if histLate > 0 {
		t.Errorf("%d historical DDATA after live ones in the same connection", histLate)
	}
	if !relayOn {
		t.Error("no DDATA with the relay on after the DCMD")
	}
	t.Logf("%d messages decoded by sparkplug-payload %s; bdSeq births %v deaths %v; %d historical and %d live DDATA", len(dec), tahuVersion, births, deaths, historical, live)
}

// TestSparkplugHistoricalAcrossKill: readings made while the link is cut
// survive kill -9 of the real binary (the pending file in data_dir) and go
// up as historical DDATA after the next process's first birth, with the
// timestamps of the readings, decoded by Tahu.
func TestSparkplugHistoricalAcrossKill(t *testing.T) {
	tahu(t)
	f := pki(t)
	up := upstream(t, f)
	px, err := netproxy.New(up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	sub := subscribe(t, f, up.Addr(), "spBv1.0/#", 1)
	brokerAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(mosquittotest.FreePort(t)))
	dataDir := t.TempDir()
	cfg := gwConfig(t, f, dataDir, brokerAddr, px.Addr(), `keepalive = "2s"
backoff_min = "10ms"
backoff_max = "100ms"`, topicRule("readings/#", "out", 1)+`[sparkplug]
enabled = true
group_id = "plant1"
[[device]]
name = "climate"
type = "sim"
kind = "sensor"
interval = "20ms"
`)
	gw := newGwProc(t, cfg, brokerAddr)
	gw.start()
	sub.waitFor(t, 20*time.Second, "the first NBIRTH", func(ms []paho.Message) bool {
		for _, m := range ms {
			if m.Topic() == "spBv1.0/plant1/NBIRTH/gw-01" {
				return true
			}
		}
		return false
	})
	local := &received{ch: make(chan struct{}, 1)}
	lc := localClient(brokerAddr, "sp-kill-local", true, nil)
	if tok := lc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local connect: %v", tok.Error())
	}
	if tok := lc.Subscribe("readings/climate", 0, func(_ paho.Client, m paho.Message) { local.add(m) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("local subscribe: %v", tok.Error())
	}
	mark := len(sub.snapshot()) // before the cut: the NDEATH can arrive before the next line runs
	px.Cut()
	cutAt := time.Now()
	sub.waitFor(t, 10*time.Second, "NDEATH after the cut", func(ms []paho.Message) bool {
		for _, m := range ms[mark:] {
			if m.Topic() == "spBv1.0/plant1/NDEATH/gw-01" {
				return true
			}
		}
		return false
	})
	n0 := len(local.snapshot())
	local.waitFor(t, 10*time.Second, "40 readings during the cut", func(ms []paho.Message) bool { return len(ms) >= n0+40 })
	// The node takes readings through a queue of its own (the broker's
	// handler never waits for its disk): kill -9 keeps what it has written
	// to its pending file, so wait for those 40 there.
	pending := filepath.Join(dataDir, "sparkplug-pending.jsonl")
	waitUntil(t, 10*time.Second, "40 readings in the node's pending file", func() bool {
		b, _ := os.ReadFile(pending)
		return bytes.Count(b, []byte("\n")) >= 40
	})
	lc.Disconnect(0)
	gw.kill()
	killedAt := time.Now()
	px.Restore()
	mark = len(sub.snapshot())
	gw.start()
	ms := sub.waitFor(t, 20*time.Second, "a new NBIRTH and live DDATA after the restart", func(ms []paho.Message) bool {
		births, live := 0, 0
		for _, m := range ms[mark:] {
			switch m.Topic() {
			case "spBv1.0/plant1/NBIRTH/gw-01":
				births++
			case "spBv1.0/plant1/DDATA/gw-01/climate":
				live++
			}
		}
		return births > 0 && live >= 80
	})
	gw.stop()
	var topics []string
	var payloads [][]byte
	for _, m := range ms[mark:] {
		topics = append(topics, m.Topic())
		payloads = append(payloads, m.Payload())
	}
	hist, beforeKill := 0, 0
	for _, d := range tahuDecode(t, topics, payloads) {
		if d.Error != "" {
			t.Fatalf("%s: Tahu cannot decode it: %s", d.Topic, d.Error)
		}
		if !strings.HasSuffix(d.Topic, "DDATA/gw-01/climate") || !d.Payload.Metrics[0].IsHistorical {
			continue
		}
		hist++
		ts := time.UnixMilli(d.Payload.Metrics[0].Timestamp)
		if ts.After(cutAt.Add(-time.Second)) && ts.Before(killedAt) {
			beforeKill++
		}
	}
	if beforeKill < 40 {
		t.Errorf("%d historical DDATA from the cut before kill -9 (of %d historical), want the 40 readings made then", beforeKill, hist)
	}
	t.Logf("%d historical DDATA after kill -9 and restart, %d of them made during the cut before the kill", hist, beforeKill)
}
