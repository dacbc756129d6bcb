package walcmp

import (
	"bytes"
	"context"
	"testing"

	"github.com/edgegw/edgegw/bridge/outbox"
	"github.com/tidwall/wal"
)

// Drain a backlog (after an outage), releasing every 100 delivered
// messages (an in-flight window of 100): bytes written while draining.
const backlog = 200000

func BenchmarkDrain(b *testing.B) {
	b.Run("outbox", func(b *testing.B) {
		dir := b.TempDir()
		o, _ := outbox.Open(outbox.Options{Dir: dir})
		m := outbox.Message{Topic: "readings/door", QoS: 1, Payload: bytes.Repeat([]byte("x"), payload)}
		for i := 0; i < backlog; i++ {
			o.AppendAsync(context.Background(), m, nil)
		}
		o.Close()
		o, _ = outbox.Open(outbox.Options{Dir: dir})
		ctx := context.Background()
		w0 := writeBytes()
		b.ResetTimer()
		for i := 0; i < backlog; i++ {
			got, err := o.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			o.Ack(got.Seq)
		}
		o.Close()
		b.StopTimer()
		w := writeBytes() - w0
		b.ReportMetric(float64(backlog)/b.Elapsed().Seconds(), "msgs/s")
		b.ReportMetric(float64(w)/float64(backlog*payload), "disk_B/payload_B")
	})
	b.Run("tidwall", func(b *testing.B) {
		dir := b.TempDir()
		l, _ := wal.Open(dir, &wal.Options{SegmentSize: 8 << 20, LogFormat: wal.Binary})
		var batch wal.Batch
		for i := 0; i < backlog; i++ {
			batch.Write(uint64(i+1), rec)
		}
		l.WriteBatch(&batch)
		w0 := writeBytes()
		b.ResetTimer()
		for i := 1; i <= backlog; i++ {
			if _, err := l.Read(uint64(i)); err != nil {
				b.Fatal(err)
			}
			if i%100 == 0 && i < backlog {
				if err := l.TruncateFront(uint64(i + 1)); err != nil {
					b.Fatal(err)
				}
			}
		}
		l.Close()
		b.StopTimer()
		w := writeBytes() - w0
		b.ReportMetric(float64(backlog)/b.Elapsed().Seconds(), "msgs/s")
		b.ReportMetric(float64(w)/float64(backlog*payload), "disk_B/payload_B")
	})
}
