package outbox

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// logBuf is a concurrency-safe log sink for asserting on log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openT(t testing.TB, opts Options) *Outbox {
	t.Helper()
	o, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

func payloadFor(i int) []byte {
	return []byte(fmt.Sprintf("payload-%06d-%s", i, bytes.Repeat([]byte{byte('a' + i%26)}, i%50)))
}

func msgFor(i int) Message {
	return Message{Topic: fmt.Sprintf("readings/dev%d", i%3), QoS: 1, Payload: payloadFor(i)}
}

// nextT reads one message with a bounded wait.
func nextT(t testing.TB, o *Outbox) Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := o.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return m
}

// expectNoNext asserts that Next has nothing durable to return right now.
func expectNoNext(t testing.TB, o *Outbox) {
	t.Helper()
	o.mu.Lock()
	cursor, durable := o.cursor, o.durableNext
	o.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if m, err := o.Next(ctx); err == nil {
		t.Fatalf("Next returned seq %d (cursor %d, durable %d), want nothing", m.Seq, cursor, durable)
	}
}

func appendN(t testing.TB, o *Outbox, from, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, 0, n)
	for i := from; i < from+n; i++ {
		s, err := o.Append(context.Background(), msgFor(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		seqs = append(seqs, s)
	}
	return seqs
}

func segFiles(t testing.TB, dir string) []uint64 {
	t.Helper()
	f, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

type appendResult struct {
	seq uint64
	err error
}

// appendAsyncN queues n messages from index from with AppendAsync and waits
// for every done callback, returning the results in call order.
func appendAsyncN(t testing.TB, o *Outbox, from, n int) []appendResult {
	t.Helper()
	res := make([]appendResult, n)
	var wg sync.WaitGroup
	for k := 0; k < n; k++ {
		wg.Add(1)
		err := o.AppendAsync(context.Background(), msgFor(from+k), func(seq uint64, err error) {
			res[k] = appendResult{seq, err}
			wg.Done()
		})
		if err != nil {
			t.Fatalf("AppendAsync %d: %v", from+k, err)
		}
	}
	wg.Wait()
	return res
}

// v1FixtureMsg is message i of testdata/v1 (written by the version-1
// record format of edgegw 0.1: 120 messages, 1-30 and 35 acknowledged,
// 40 released).
func v1FixtureMsg(i int) Message {
	m := Message{Topic: fmt.Sprintf("readings/dev%d", i%4), QoS: 1 + byte(i%2), Retain: i%7 == 0, Payload: payloadFor(i)}
	if m.QoS == 2 {
		m.Origin, m.OriginPID = fmt.Sprintf("client-%d", i%3), uint16(1000+i)
	}
	return m
}
