package outbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var benchPayload = bytes.Repeat([]byte("x"), 100)

func benchMsg() Message {
	return Message{Topic: "readings/door", QoS: 1, Payload: benchPayload}
}

// appendAll queues n messages and waits until every one is durable.
func appendAll(b *testing.B, o *Outbox, n int) {
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		if err := o.AppendAsync(context.Background(), benchMsg(), func(_ uint64, err error) {
			if err != nil {
				b.Error(err)
			}
			wg.Done()
		}); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
}

// BenchmarkAppend measures AppendAsync of 100-byte payloads from one
// producer until every callback reported durable, per fsync mode.
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []FsyncMode{FsyncBatch, FsyncAlways, FsyncInterval} {
		b.Run(mode.String(), func(b *testing.B) {
			o := openT(b, Options{Dir: b.TempDir(), Fsync: mode})
			b.ResetTimer()
			appendAll(b, o, b.N)
			b.StopTimer()
			reportAppend(b, o)
		})
	}
}

// BenchmarkAppendSync64 has 64 publishers each calling Append (waiting for
// durability) in a loop: group commit gathers them into shared fsyncs.
func BenchmarkAppendSync64(b *testing.B) {
	o := openT(b, Options{Dir: b.TempDir()})
	b.SetParallelism(64 / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := o.Append(context.Background(), benchMsg()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportAppend(b, o)
}

func reportAppend(b *testing.B, o *Outbox) {
	st := o.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(st.BytesWritten)/float64(st.PayloadBytes), "written/payload_B")
	b.ReportMetric(float64(st.Fsyncs)/float64(b.N), "fsyncs/msg")
}

// BenchmarkNextAck reads back (and acknowledges) a backlog of b.N messages.
func BenchmarkNextAck(b *testing.B) {
	o := openT(b, Options{Dir: b.TempDir()})
	appendAll(b, o, b.N)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, err := o.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := o.Ack(m.Seq); err != nil {
			b.Fatal(err)
		}
	}
	if err := o.flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	st := o.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	// Appends and the acks' log records together.
	b.ReportMetric(float64(st.BytesWritten)/float64(st.PayloadBytes), "written/payload_B")
}

const backlogN = 1_000_000

var (
	backlogOnce sync.Once
	backlogDir  string
)

// backlog returns a closed outbox dir holding 1,000,000 unacknowledged
// 100-byte messages, built once per benchmark run.
func backlog(b *testing.B) string {
	backlogOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outbox-backlog")
		if err != nil {
			b.Fatal(err)
		}
		backlogDir = dir
		o, err := Open(Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		appendAll(b, o, backlogN)
		if err := o.Close(); err != nil {
			b.Fatal(err)
		}
	})
	return backlogDir
}

// BenchmarkOpen1M measures Open (recovery) with a 1,000,000-message backlog.
func BenchmarkOpen1M(b *testing.B) {
	dir := backlog(b)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		o, err := Open(Options{Dir: dir})
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if st := o.Stats(); st.Messages != backlogN {
			b.Fatalf("backlog has %d messages", st.Messages)
		}
		b.StopTimer()
		o.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/open")
}

// BenchmarkHeap1M reports the heap in use with an empty outbox, after
// appending 1,000,000 messages that stay queued (unacknowledged), and after
// reopening that backlog. The qos2 case also fills the RecentOrigin window.
func BenchmarkHeap1M(b *testing.B) {
	for _, qos := range []byte{1, 2} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				dir := b.TempDir()
				o, err := Open(Options{Dir: dir})
				if err != nil {
					b.Fatal(err)
				}
				empty, emptyRSS := heapInUse(), rss()
				var wg sync.WaitGroup
				wg.Add(backlogN)
				for k := 0; k < backlogN; k++ {
					m := benchMsg()
					m.QoS = qos
					if qos == 2 {
						m.Origin, m.OriginPID = "sensor-hub-01", uint16(k)
					}
					if err := o.AppendAsync(context.Background(), m, func(uint64, error) { wg.Done() }); err != nil {
						b.Fatal(err)
					}
				}
				wg.Wait()
				full, fullRSS := heapInUse(), rss()
				o.Close()
				o, err = Open(Options{Dir: dir})
				if err != nil {
					b.Fatal(err)
				}
				reopened := heapInUse()
				if st := o.Stats(); st.Messages != backlogN {
					b.Fatalf("backlog has %d messages", st.Messages)
				}
				o.Close()
				b.ReportMetric(float64(empty)/(1<<20), "heap_empty_MiB")
				b.ReportMetric(float64(full)/(1<<20), "heap_1M_MiB")
				b.ReportMetric(float64(reopened)/(1<<20), "heap_reopened_1M_MiB")
				b.ReportMetric(float64(fullRSS-emptyRSS)/(1<<20), "rss_growth_MiB")
			}
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// rss returns the resident set size from /proc/self/status (0 if unknown).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
