package bridge

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgegw/edgegw/bridge/outbox"
)

// The upstream session against a scripted broker: each case is a list of
// steps on the broker's side of a net.Pipe — bytes the bridge must send
// next (exactly), bytes the broker sends, a dropped connection, a state to
// reach. Packets are written as their canonical bytes, MQTT 3.1.1 unless the
// case says 5, in the style of mochi's packet tests.

// Canonical packets a broker sends, and the bridge's acknowledgements.
func connack(sessionPresent bool, rc byte) []byte {
	sp := byte(0)
	if sessionPresent {
		sp = 1
	}
	return []byte{0x20, 0x02, sp, rc}
}
func puback(id uint16) []byte  { return []byte{0x40, 0x02, byte(id >> 8), byte(id)} }
func pubrec(id uint16) []byte  { return []byte{0x50, 0x02, byte(id >> 8), byte(id)} }
func pubrel(id uint16) []byte  { return []byte{0x62, 0x02, byte(id >> 8), byte(id)} }
func pubcomp(id uint16) []byte { return []byte{0x70, 0x02, byte(id >> 8), byte(id)} }

var (
	pingreq    = []byte{0xc0, 0x00}
	pingresp   = []byte{0xd0, 0x00}
	disconnect = []byte{0xe0, 0x00}
)

// pub is a PUBLISH: fixed header flags, topic, packet id (QoS > 0), an
// empty property list (MQTT 5), payload.
func pub(v5 bool, topic, payload string, qos byte, id uint16, dup, retain bool) []byte {
	var body []byte
	body = append(body, byte(len(topic)>>8), byte(len(topic)))
	body = append(body, topic...)
	if qos > 0 {
		body = append(body, byte(id>>8), byte(id))
	}
	if v5 {
		body = append(body, 0x00)
	}
	body = append(body, payload...)
	h := byte(0x30) | qos<<1
	if dup {
		h |= 0x08
	}
	if retain {
		h |= 0x01
	}
	return append(append([]byte{h}, remLen(len(body))...), body...)
}

func remLen(n int) []byte {
	var out []byte
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

func p3(topic, payload string, qos byte, id uint16, dup bool) []byte {
	return pub(false, topic, payload, qos, id, dup, false)
}

// step is one line of a script.
type step struct {
	out     []byte                  // the bridge must send exactly these bytes next
	in      []byte                  // the broker sends these bytes
	connect []byte                  // read a CONNECT (any), answer with these bytes
	sub     []byte                  // read a SUBSCRIBE, answer SUBACK with its id and these codes
	subWant string                  // the filter the SUBSCRIBE must carry
	drop    bool                    // the broker closes the connection
	until   func(s *scripted) error // wait (bounded) until this returns nil
	note    string
}

type scriptCase struct {
	name     string
	v5       bool
	rules    []Rule
	stored   []outbox.Message // in the outbox before the bridge starts
	qos0     []outbox.Message // in the QoS 0 ring before the bridge starts
	keep     time.Duration    // keepalive (default 30s)
	steps    []step
	delivers []string // "topic qos payload" the bridge must have delivered locally, in order
}

type scripted struct {
	t       *testing.T
	b       *Bridge
	ob      *outbox.Outbox
	conns   chan net.Conn
	mu      sync.Mutex
	deliver []string
	logs    *lockedBuf
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (s *scripted) delivered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.deliver...)
}

// readRaw reads one whole packet as it came over the wire.
func readRaw(br *bufio.Reader) ([]byte, error) {
	h, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	raw := []byte{h}
	n, mul := 0, 1
	for i := 0; i < 4; i++ {
		b, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		raw = append(raw, b)
		n += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	return append(raw, body...), nil
}

func (c scriptCase) run(t *testing.T) {
	ob, err := outbox.Open(outbox.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.stored {
		if _, err := ob.Append(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	var ring *outbox.Ring
	if c.qos0 != nil {
		ring = outbox.NewRing(1 << 16)
		for _, m := range c.qos0 {
			ring.Push(m)
		}
	}
	keep := c.keep
	if keep == 0 {
		keep = 30 * time.Second
	}
	ver := byte(4)
	if c.v5 {
		ver = 5
	}
	s := &scripted{t: t, ob: ob, conns: make(chan net.Conn, 4), logs: &lockedBuf{}}
	s.b = New(Options{
		Endpoints: []Endpoint{{Addr: "scripted"}},
		ClientID:  "gw", Keepalive: keep, Version: ver, Rules: c.rules, Outbox: ob, QoS0: ring,
		BackoffMin: time.Millisecond, BackoffMax: 2 * time.Millisecond,
		Dial: func(ctx context.Context, _ string) (net.Conn, error) {
			server, client := net.Pipe()
			select {
			case s.conns <- server:
				return client, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
		Deliver: func(topic string, payload []byte, qos byte, retain bool) error {
			s.mu.Lock()
			s.deliver = append(s.deliver, fmt.Sprintf("%s %d %s", topic, qos, payload))
			s.mu.Unlock()
			return nil
		},
		Logger: slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.b.Run(ctx) }()
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		cancel()
		if conn != nil {
			go io.Copy(io.Discard, conn) // let the goodbye through
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s")
		}
		if conn != nil {
			conn.Close()
		}
		ob.Close()
		if t.Failed() {
			t.Logf("bridge log:\n%s", s.logs.String())
		}
	}()
	accept := func() {
		t.Helper()
		if conn != nil {
			conn.Close()
		}
		select {
		case conn = <-s.conns:
		case <-time.After(2 * time.Second):
			t.Fatal("the bridge did not (re)connect within 2s")
		}
		br = bufio.NewReader(conn)
	}
	next := func(what string) []byte {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		raw, err := readRaw(br)
		if err != nil {
			t.Fatalf("%s: reading the bridge's next packet: %v", what, err)
		}
		return raw
	}
	write := func(b []byte, what string) {
		t.Helper()
		_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write(b); err != nil {
			t.Fatalf("%s: writing % x: %v", what, b, err)
		}
	}
	for i, st := range c.steps {
		what := fmt.Sprintf("step %d %s", i, st.note)
		switch {
		case st.connect != nil:
			accept()
			raw := next(what)
			if raw[0] != 0x10 {
				t.Fatalf("%s: want CONNECT, got % x", what, raw)
			}
			if c.v5 != (bytes.Contains(raw, []byte("MQTT\x05"))) {
				t.Fatalf("%s: CONNECT of the wrong protocol level: % x", what, raw)
			}
			write(st.connect, what)
		case st.sub != nil:
			raw := next(what)
			if raw[0] != 0x82 || !bytes.Contains(raw, []byte(st.subWant)) {
				t.Fatalf("%s: want SUBSCRIBE %q, got % x", what, st.subWant, raw)
			}
			i := 1 + len(remLen(len(raw)-2)) // packet id after the fixed header
			for raw[i-1]&0x80 != 0 {
				i++
			}
			ack := []byte{0x90, byte(2 + len(st.sub)), raw[i], raw[i+1]}
			if c.v5 {
				ack = []byte{0x90, byte(3 + len(st.sub)), raw[i], raw[i+1], 0x00}
			}
			write(append(ack, st.sub...), what)
		case st.out != nil:
			if raw := next(what); !bytes.Equal(raw, st.out) {
				t.Fatalf("%s: the bridge sent\n  % x\nwant\n  % x", what, raw, st.out)
			}
		case st.in != nil:
			write(st.in, what)
		case st.drop:
			conn.Close()
		case st.until != nil:
			deadline := time.Now().Add(2 * time.Second)
			for {
				err := st.until(s)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %v", what, err)
				}
				time.Sleep(time.Millisecond) // bridge state has no event to wait on
			}
		}
	}
	if c.delivers != nil {
		got := s.delivered()
		if strings.Join(got, "\n") != strings.Join(c.delivers, "\n") {
			t.Fatalf("delivered locally:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.delivers, "\n"))
		}
	}
}

// backlog waits until the outbox holds n unacknowledged messages.
func backlog(n uint64) func(*scripted) error {
	return func(s *scripted) error {
		if got := s.ob.Stats().Messages; got != n {
			return fmt.Errorf("outbox holds %d messages; want %d", got, n)
		}
		return nil
	}
}

// linkDowns waits until the bridge has counted n lost links.
func linkDowns(n uint64) func(*scripted) error {
	return func(s *scripted) error {
		if got := s.b.Stats().LinkDowns; got < n {
			return fmt.Errorf("%d link downs; want %d", got, n)
		}
		return nil
	}
}

// lastError waits until the bridge's last error contains want.
func lastError(want string) func(*scripted) error {
	return func(s *scripted) error {
		if got := s.b.Stats().LastError; !strings.Contains(got, want) {
			return fmt.Errorf("last error %q; want it to contain %q", got, want)
		}
		return nil
	}
}

// deliveredN waits until n messages came down and were delivered.
func deliveredN(n int) func(*scripted) error {
	return func(s *scripted) error {
		if got := len(s.delivered()); got != n {
			return fmt.Errorf("%d delivered; want %d", got, n)
		}
		return nil
	}
}

func q1(topic, payload string) outbox.Message {
	return outbox.Message{Topic: topic, QoS: 1, Payload: []byte(payload)}
}
func q2(topic, payload string) outbox.Message {
	return outbox.Message{Topic: topic, QoS: 2, Payload: []byte(payload)}
}

var (
	outRules  = []Rule{{Pattern: "r/#", Direction: Out, QoS: 2}}
	bothRules = []Rule{{Pattern: "r/#", Direction: Out, QoS: 2}, {Pattern: "cmd/#", Direction: In, QoS: 2, RemotePrefix: "site/", LocalPrefix: ""}}
	ok        = connack(false, 0)
)

func TestSessionScripted(t *testing.T) {
	cases := []scriptCase{
		// QoS 1 out.
		{name: "qos1 publish and puback", rules: outRules, stored: []outbox.Message{q1("r/a", "x")}, steps: []step{
			{connect: ok}, {out: []byte{0x32, 0x08, 0x00, 0x03, 'r', '/', 'a', 0x00, 0x01, 'x'}}, {in: puback(1)}, {until: backlog(0)}}},
		{name: "qos1 two in order, acked out of order", rules: outRules, stored: []outbox.Message{q1("r/a", "1"), q1("r/a", "2")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "1", 1, 1, false)}, {out: p3("r/a", "2", 1, 2, false)}, {in: puback(2)}, {until: backlog(1)}, {in: puback(1)}, {until: backlog(0)}}},
		{name: "qos1 retain flag kept", rules: outRules, stored: []outbox.Message{{Topic: "r/s", QoS: 1, Retain: true, Payload: []byte("on")}}, steps: []step{
			{connect: ok}, {out: pub(false, "r/s", "on", 1, 1, false, true)}, {in: puback(1)}, {until: backlog(0)}}},
		{name: "puback for an id not in flight is ignored", rules: outRules, stored: []outbox.Message{q1("r/a", "x")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "x", 1, 1, false)}, {in: puback(999)}, {in: pingresp}, {until: backlog(1)}, {in: puback(1)}, {until: backlog(0)}, {until: linkDowns(0)}}},
		{name: "a second puback for the same id is ignored", rules: outRules, stored: []outbox.Message{q1("r/a", "1"), q1("r/a", "2")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "1", 1, 1, false)}, {out: p3("r/a", "2", 1, 2, false)}, {in: puback(1)}, {in: puback(1)}, {until: backlog(1)}, {in: puback(2)}, {until: backlog(0)}}},
		{name: "unacknowledged qos1 resent after reconnect with DUP and the same id", rules: outRules, stored: []outbox.Message{q1("r/a", "x")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "x", 1, 1, false)}, {drop: true}, {connect: connack(true, 0)}, {out: p3("r/a", "x", 1, 1, true)}, {in: puback(1)}, {until: backlog(0)}}},
		{name: "a window of three resent in order after reconnect", rules: outRules, stored: []outbox.Message{q1("r/a", "1"), q1("r/b", "2"), q1("r/a", "3")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "1", 1, 1, false)}, {out: p3("r/b", "2", 1, 2, false)}, {out: p3("r/a", "3", 1, 3, false)}, {drop: true},
			{connect: connack(true, 0)}, {out: p3("r/a", "1", 1, 1, true)}, {out: p3("r/b", "2", 1, 2, true)}, {out: p3("r/a", "3", 1, 3, true)},
			{in: puback(1)}, {in: puback(2)}, {in: puback(3)}, {until: backlog(0)}}},
		{name: "what was acknowledged is not resent after reconnect", rules: outRules, stored: []outbox.Message{q1("r/a", "1"), q1("r/a", "2")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "1", 1, 1, false)}, {out: p3("r/a", "2", 1, 2, false)}, {in: puback(1)}, {until: backlog(1)}, {drop: true},
			{connect: connack(true, 0)}, {out: p3("r/a", "2", 1, 2, true)}, {in: puback(2)}, {until: backlog(0)}}},
		{name: "server DISCONNECT: link down, back up, resent", rules: outRules, stored: []outbox.Message{q1("r/a", "x")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "x", 1, 1, false)}, {in: disconnect}, {until: linkDowns(1)}, {connect: ok}, {out: p3("r/a", "x", 1, 1, true)}, {in: puback(1)}, {until: backlog(0)}}},
		// QoS 2 out.
		{name: "qos2 publish, pubrec, pubrel, pubcomp", rules: outRules, stored: []outbox.Message{q2("r/a", "x")}, steps: []step{
			{connect: ok}, {out: []byte{0x34, 0x08, 0x00, 0x03, 'r', '/', 'a', 0x00, 0x01, 'x'}}, {in: pubrec(1)}, {out: pubrel(1)}, {until: backlog(1)}, {in: pubcomp(1)}, {until: backlog(0)}}},
		{name: "qos2 after pubrec and a reconnect: PUBREL, not PUBLISH", rules: outRules, stored: []outbox.Message{q2("r/a", "x")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "x", 2, 1, false)}, {in: pubrec(1)}, {out: pubrel(1)}, {drop: true},
			{connect: connack(true, 0)}, {out: pubrel(1)}, {in: pubcomp(1)}, {until: backlog(0)}}},
		{name: "qos2 without pubrec resent with DUP and the same id", rules: outRules, stored: []outbox.Message{q2("r/a", "x")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "x", 2, 1, false)}, {drop: true}, {connect: connack(true, 0)}, {out: p3("r/a", "x", 2, 1, true)}, {in: pubrec(1)}, {out: pubrel(1)}, {in: pubcomp(1)}, {until: backlog(0)}}},
		{name: "pubrec for an id not in flight is released", rules: outRules, steps: []step{
			{connect: ok}, {in: pubrec(77)}, {out: pubrel(77)}}},
		{name: "pubcomp for an id not in flight is ignored", rules: outRules, stored: []outbox.Message{q2("r/a", "x")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "x", 2, 1, false)}, {in: pubcomp(9)}, {in: pubrec(1)}, {out: pubrel(1)}, {in: pubcomp(1)}, {until: backlog(0)}}},
		{name: "qos1 and qos2 interleaved keep their order and ids", rules: outRules, stored: []outbox.Message{q1("r/a", "1"), q2("r/a", "2"), q1("r/a", "3")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "1", 1, 1, false)}, {out: p3("r/a", "2", 2, 2, false)}, {out: p3("r/a", "3", 1, 3, false)},
			{in: pubrec(2)}, {out: pubrel(2)}, {in: puback(3)}, {in: puback(1)}, {in: pubcomp(2)}, {until: backlog(0)}}},
		{name: "ids follow the outbox sequence across topics; a partial ack keeps the rest in flight", rules: outRules, stored: []outbox.Message{q1("r/a", "1"), q1("r/b", "2"), q2("r/c", "3")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "1", 1, 1, false)}, {out: p3("r/b", "2", 1, 2, false)}, {out: p3("r/c", "3", 2, 3, false)},
			{in: puback(2)}, {until: backlog(2)}, {drop: true}, {connect: connack(true, 0)}, {out: p3("r/a", "1", 1, 1, true)}, {out: p3("r/c", "3", 2, 3, true)},
			{in: puback(1)}, {in: pubrec(3)}, {out: pubrel(3)}, {in: pubcomp(3)}, {until: backlog(0)}}},
		// MQTT 5.
		{name: "v5 connack with maximum qos 1: qos2 goes as qos1", v5: true, rules: outRules, stored: []outbox.Message{q2("r/a", "x")}, steps: []step{
			{connect: []byte{0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x01}}, {out: pub(true, "r/a", "x", 1, 1, false, false)}, {in: puback(1)}, {until: backlog(0)}}},
		{name: "v5 qos2 full flow with property bytes", v5: true, rules: outRules, stored: []outbox.Message{q2("r/a", "x")}, steps: []step{
			{connect: []byte{0x20, 0x03, 0x00, 0x00, 0x00}}, {out: pub(true, "r/a", "x", 2, 1, false, false)}, {in: pubrec(1)}, {out: pubrel(1)}, {in: pubcomp(1)}, {until: backlog(0)}}},
		{name: "v5 pubrec with a permanent failure reason (0x87) ends the message, no pubrel", v5: true, rules: outRules, stored: []outbox.Message{q2("r/a", "x"), q1("r/a", "y")}, steps: []step{
			{connect: []byte{0x20, 0x03, 0x00, 0x00, 0x00}}, {out: pub(true, "r/a", "x", 2, 1, false, false)}, {out: pub(true, "r/a", "y", 1, 2, false, false)},
			{in: []byte{0x50, 0x03, 0x00, 0x01, 0x87}}, {until: backlog(1)}, {in: puback(2)}, {until: backlog(0)}}},
		{name: "v5 connack refused: not authorised, retried", v5: true, rules: outRules, steps: []step{
			{connect: []byte{0x20, 0x03, 0x00, 0x87, 0x00}}, {until: lastError("not authorised")}, {connect: []byte{0x20, 0x03, 0x00, 0x00, 0x00}}}},
		// Connection set-up.
		{name: "connack refused (3.1.1 code 5), retried", rules: outRules, steps: []step{
			{connect: connack(false, 5)}, {until: lastError("not authorised")}, {connect: ok}}},
		{name: "connack refused (3.1.1 code 4): bad user name or password", rules: outRules, steps: []step{
			{connect: connack(false, 4)}, {until: lastError("bad user name or password")}, {connect: ok}}},
		{name: "an answer to CONNECT that is not a CONNACK", rules: outRules, steps: []step{
			{connect: pingresp}, {until: lastError("instead of CONNACK")}, {connect: ok}}},
		{name: "the server closes before CONNACK", rules: outRules, steps: []step{
			{connect: []byte{}}, {drop: true}, {until: lastError("closed the connection")}, {connect: ok}}},
		// Subscriptions (rules with direction in).
		{name: "SUBSCRIBE before any PUBLISH, then the backlog", rules: bothRules, stored: []outbox.Message{q1("r/a", "x")}, steps: []step{
			{connect: ok}, {sub: []byte{0x02}, subWant: "site/cmd/#"}, {out: p3("r/a", "x", 1, 1, false)}, {in: puback(1)}, {until: backlog(0)}}},
		{name: "SUBACK failure: the link stays and the backlog still goes", rules: bothRules, stored: []outbox.Message{q1("r/a", "x")}, steps: []step{
			{connect: ok}, {sub: []byte{0x80}, subWant: "site/cmd/#"}, {out: p3("r/a", "x", 1, 1, false)}, {in: puback(1)}, {until: backlog(0)}, {until: linkDowns(0)}}},
		// Inbound.
		{name: "inbound qos0 delivered, nothing sent back", rules: bothRules, steps: []step{
			{connect: ok}, {sub: []byte{0x02}, subWant: "site/cmd/#"}, {in: p3("site/cmd/relay", "on", 0, 0, false)}, {until: deliveredN(1)}},
			delivers: []string{"cmd/relay 0 on"}},
		{name: "inbound qos1 delivered and acknowledged", rules: bothRules, steps: []step{
			{connect: ok}, {sub: []byte{0x01}, subWant: "site/cmd/#"}, {in: p3("site/cmd/relay", "on", 1, 5, false)}, {out: puback(5)}},
			delivers: []string{"cmd/relay 1 on"}},
		{name: "inbound qos2: pubrec, pubrel, pubcomp, delivered once", rules: bothRules, steps: []step{
			{connect: ok}, {sub: []byte{0x02}, subWant: "site/cmd/#"}, {in: p3("site/cmd/relay", "on", 2, 6, false)}, {out: pubrec(6)}, {in: pubrel(6)}, {out: pubcomp(6)}},
			delivers: []string{"cmd/relay 2 on"}},
		{name: "inbound qos2 resent before pubrel is not delivered twice", rules: bothRules, steps: []step{
			{connect: ok}, {sub: []byte{0x02}, subWant: "site/cmd/#"}, {in: p3("site/cmd/relay", "on", 2, 6, false)}, {out: pubrec(6)},
			{in: p3("site/cmd/relay", "on", 2, 6, true)}, {out: pubrec(6)}, {in: pubrel(6)}, {out: pubcomp(6)}},
			delivers: []string{"cmd/relay 2 on"}},
		{name: "inbound pubrel for an unknown id is completed", rules: bothRules, steps: []step{
			{connect: ok}, {sub: []byte{0x02}, subWant: "site/cmd/#"}, {in: pubrel(42)}, {out: pubcomp(42)}}},
		{name: "inbound message matching no in rule is dropped but acknowledged", rules: bothRules, steps: []step{
			{connect: ok}, {sub: []byte{0x02}, subWant: "site/cmd/#"}, {in: p3("elsewhere/x", "?", 1, 8, false)}, {out: puback(8)}},
			delivers: []string{}},
		// Keepalive.
		{name: "pingresp keeps a quiet link up", rules: outRules, keep: 200 * time.Millisecond, steps: []step{
			{connect: ok}, {out: pingreq}, {in: pingresp}, {out: pingreq}, {in: pingresp}, {until: linkDowns(0)}}},
		{name: "keepalive stall: no answer to PINGREQ, link declared dead and redialled", rules: outRules, keep: 200 * time.Millisecond, stored: []outbox.Message{q1("r/a", "x")}, steps: []step{
			{connect: ok}, {out: p3("r/a", "x", 1, 1, false)}, {out: pingreq}, {until: lastError("stalled")}, {connect: ok}, {out: p3("r/a", "x", 1, 1, true)}, {in: puback(1)}, {until: backlog(0)}}},
		// QoS 0 from the memory ring.
		{name: "qos0 from the ring goes without a packet id", rules: outRules, qos0: []outbox.Message{{Topic: "r/z", Payload: []byte("t")}}, steps: []step{
			{connect: ok}, {out: []byte{0x30, 0x06, 0x00, 0x03, 'r', '/', 'z', 't'}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t)
		})
	}
}

// TestPacketIDWraps: a message's packet identifier is a function of its
// outbox sequence number that never yields 0 and wraps after 65535, so an
// identifier is not reused while fewer than 65535 messages are in flight.
func TestPacketIDWraps(t *testing.T) {
	for _, c := range []struct {
		seq  uint64
		want uint16
	}{{1, 1}, {2, 2}, {65534, 65534}, {65535, 65535}, {65536, 1}, {65537, 2}, {131070, 65535}, {131071, 1}, {1<<40 + 1, uint16((1<<40)%65535) + 1}} {
		if got := pid(c.seq); got != c.want {
			t.Errorf("pid(%d) = %d; want %d", c.seq, got, c.want)
		}
	}
}
