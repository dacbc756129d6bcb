package e2e

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgegw/edgegw/internal/mosquittotest"
	"github.com/edgegw/edgegw/internal/netproxy"
	"github.com/edgegw/edgegw/internal/testenv"
)

// segRecord is one whole record of an outbox segment as the test reads it.
type segRecord struct {
	off, end int64 // byte range in the file, length prefix to end of body
	topic    string
	payload  []byte
}

// readSegment parses a version-4 outbox segment, as the test's independent
// reading of the format: a 16-byte header, then records of uvarint body
// length | CRC32C | body laid out in 4 KiB pages (zeros pad a page's end).
// A body is flags (qos bits 0-1, retain 2, origin 3, delta 4), then for the
// first record of a page seq (uvarint) | ms (varint) | topic length | topic,
// for a later one seq delta | ms delta | topic ref (0: new, length | topic;
// k: the page's k-th topic); then [origin pid | origin length | origin] |
// payload. A delta record's CRC covers the previous seq (8 bytes LE) first.
// It stops at the first record that does not check out.
func readSegment(t *testing.T, path string) []segRecord {
	t.Helper()
	const page = 4096
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 16 || string(b[:6]) != "EGWOBX" || b[6] != 4 {
		t.Fatalf("%s: not a version-4 outbox segment (header %q)", path, b[:min(16, len(b))])
	}
	table := crc32.MakeTable(crc32.Castagnoli)
	var recs []segRecord
	var topics []string
	var prevSeq uint64
	ctxPage := -1
	off := 16
	for off < len(b) {
		if b[off] == 0 { // padding to the page's end
			off += page - off%page
			continue
		}
		l, n := binary.Uvarint(b[off:])
		if n <= 0 || off+n+4+int(l) > len(b) || l < 4 {
			break
		}
		body := b[off+n+4 : off+n+4+int(l)]
		delta := body[0]&(1<<4) != 0
		if delta && ctxPage != off/page {
			break
		}
		sum := crc32.New(table)
		if delta {
			var s [8]byte
			binary.LittleEndian.PutUint64(s[:], prevSeq)
			sum.Write(s[:])
		}
		sum.Write(body)
		if sum.Sum32() != binary.LittleEndian.Uint32(b[off+n:]) {
			break
		}
		p := 1
		next := func() uint64 {
			v, k := binary.Uvarint(body[p:])
			if k <= 0 {
				t.Fatalf("%s: bad varint in the record at %d", path, off)
			}
			p += k
			return v
		}
		seq := next()
		next() // time (zigzag varint, same length rules)
		var topic string
		if !delta {
			tl := int(next())
			topic, p = string(body[p:p+tl]), p+tl
			topics, ctxPage = []string{topic}, off/page
		} else {
			seq += prevSeq
			if ref := next(); ref > 0 {
				topic = topics[ref-1]
			} else {
				tl := int(next())
				topic, p = string(body[p:p+tl]), p+tl
				topics = append(topics, topic)
			}
		}
		prevSeq = seq
		if body[0]&(1<<3) != 0 {
			next()
			p += int(next())
		}
		recs = append(recs, segRecord{off: int64(off), end: int64(off + n + 4 + int(l)), topic: topic, payload: body[p:]})
		off += n + 4 + int(l)
	}
	return recs
}

// flip xors four bytes of path at off, as a failing card does.
func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] ^= 0x5a
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptSegments: the real binary fills its outbox with the uplink
// down (several sealed segments), is stopped, and four bytes are flipped
// in one record of a sealed segment, in another sealed segment's header
// and in a record in the middle of the last segment. Started again with
// the uplink up, exactly the damaged records and the records after them
// in their pages (compact records need the ones before them in their
// page) are missing upstream (the damaged header costs nothing), the
// mid-segment damage is logged at ERROR and never called a torn tail, and
// /metrics counts the skipped bytes and the corrupt messages.
func TestCorruptSegments(t *testing.T) {
	testenv.Integration(t, "a real Mosquitto and the built binary")
	const total = 2400
	f := pki(t)
	up := upstream(t, f)
	px, err := netproxy.New(up.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	px.Cut()
	sub := subscribeSeqs(t, f, up.Addr(), 1)
	brokerAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(mosquittotest.FreePort(t)))
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(mosquittotest.FreePort(t)))
	dataDir := t.TempDir()
	cfg := strings.Replace(storeConfig(t, f, dataDir, brokerAddr, px.Addr(), 1, "[buffer]\nsegment_bytes = \"64KiB\"\ncommit_interval = \"20ms\"\n"),
		`http_listen = ""`, fmt.Sprintf("http_listen = %q", httpAddr), 1)
	gw := newGwProc(t, cfg, brokerAddr)
	gw.start()

	c := localClient(brokerAddr, "pub-corrupt", true, nil)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("local publisher connect: %v", tok.Error())
	}
	want := map[string][]uint64{}
	// 100 bytes of padding: about 125 bytes a record, so 64 KiB segments
	// take about 520 messages each.
	pad := " " + strings.Repeat("x", 100)
	toks := make([]paho.Token, 0, total)
	for i := 0; i < total; i++ {
		topic := storeTopics[i%len(storeTopics)]
		seq := uint64(i/len(storeTopics) + 1)
		want[topic] = append(want[topic], seq)
		toks = append(toks, c.Publish(topic, 1, false, payloadOf(topic, seq)+pad))
		if len(toks) >= 200 || i == total-1 {
			for _, tok := range toks {
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatalf("local publisher: message not acknowledged within 10s: %v", tok.Error())
				}
			}
			toks = toks[:0]
		}
	}
	c.Disconnect(100)
	gw.stop()

	segs, err := filepath.Glob(filepath.Join(dataDir, "outbox", "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(segs)
	if len(segs) < 4 {
		t.Fatalf("%d segments after %d messages, want at least 4 (3 sealed and the last)", len(segs), total)
	}
	type damage struct {
		seg   string
		rec   segRecord
		topic string
		seq   uint64
	}
	var lost []damage
	var skipped int64
	var victims []segRecord
	pick := func(seg string, i int) {
		recs := readSegment(t, seg)
		if i < 0 {
			i = len(recs) / 2
		}
		if len(recs) < 3 || i >= len(recs) {
			t.Fatalf("%s holds %d whole records, want at least 3 and one at %d", seg, len(recs), i)
		}
		const page = 4096
		var skip int64 // up to the next page's first record
		for j, r := range recs[i:] {
			if r.off/page != recs[i].off/page {
				skip = r.off - recs[i].off
				break
			}
			name, seq, err := parsePayload(r.payload)
			local, ok := strings.CutPrefix(r.topic, remotePrefix) // the outbox keeps the remote topic
			if err != nil || !ok || local != "readings/"+name {
				t.Fatalf("%s record %d: topic %q payload %q: %v", seg, i+j, r.topic, r.payload, err)
			}
			lost = append(lost, damage{seg, r, local, seq})
		}
		if skip == 0 {
			t.Fatalf("%s: no record after the page of record %d, want the damage inside the segment", seg, i)
		}
		skipped += skip
		flip(t, seg, (recs[i].off+recs[i].end)/2)
		victims = append(victims, recs[i])
	}
	pick(segs[1], 7)            // a record of a sealed segment
	flip(t, segs[2], 2)         // a sealed segment's header (inside the magic)
	pick(segs[len(segs)-1], -1) // a record in the middle of the last segment
	for _, d := range lost {
		t.Logf("lost %s %d in %s at %d..%d", d.topic, d.seq, filepath.Base(d.seg), d.rec.off, d.rec.end)
	}

	px.Restore()
	logStart := len(gw.logs.String())
	gw.start()
	expect := map[string][]uint64{}
	isLost := func(topic string, seq uint64) bool {
		for _, d := range lost {
			if d.topic == topic && d.seq == seq {
				return true
			}
		}
		return false
	}
	for topic, seqs := range want {
		for _, s := range seqs {
			if !isLost(topic, s) {
				expect[topic] = append(expect[topic], s)
			}
		}
	}
	if !sub.waitFor(20*time.Second, func(got map[string][]uint64) bool { return haveAll(got, expect) }) {
		t.Errorf("not every undamaged message arrived within 20s")
	}
	sub.barrier(t, 1)
	got := sub.snapshot()
	for _, d := range lost {
		for _, s := range got[d.topic] {
			if s == d.seq {
				t.Errorf("%s %d arrived although its record was damaged", d.topic, d.seq)
			}
		}
	}
	sub.mu.Lock()
	bad := append([]string(nil), sub.bad...)
	sub.mu.Unlock()
	checkSeqs(t, got, bad, acceptance{want: expect, exactlyOnce: true})

	if v := metric(t, httpAddr, "edgegw_outbox_skipped_bytes_total"); v != float64(skipped) {
		t.Errorf("edgegw_outbox_skipped_bytes_total = %v, want %d (the damaged records to the ends of their pages)", v, skipped)
	}
	if v := metric(t, httpAddr, `edgegw_outbox_dropped_total{reason="corrupt"}`); v != float64(len(lost)) {
		t.Errorf(`edgegw_outbox_dropped_total{reason="corrupt"} = %v, want %d`, v, len(lost))
	}
	if v := metric(t, httpAddr, "edgegw_outbox_tail_cut_bytes_total"); v != 0 {
		t.Errorf("edgegw_outbox_tail_cut_bytes_total = %v, want 0: no tail was torn", v)
	}
	logs := gw.logs.String()[logStart:]
	t.Logf("restart's warnings and errors:\n%s", notable(logs, 20))
	last := filepath.Base(segs[len(segs)-1])
	var lastErr bool
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "torn") {
			t.Errorf("mid-segment damage called a torn tail: %s", line)
		}
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, last) && strings.Contains(line, fmt.Sprintf("offset=%d", victims[1].off)) {
			lastErr = true
		}
	}
	if !lastErr {
		t.Errorf("no ERROR line names %s at offset %d (the damage in the middle of the last segment)", last, victims[1].off)
	}
	gw.stop()
}
