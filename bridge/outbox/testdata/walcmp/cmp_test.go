// Package walcmp compares bridge/outbox with github.com/tidwall/wal and
// go.etcd.io/bbolt on the same workload (see the outbox package doc).
// It is its own module so that neither library enters edgegw's go.mod.
package walcmp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/edgegw/edgegw/bridge/outbox"
	"github.com/tidwall/wal"
	bolt "go.etcd.io/bbolt"
)

// The same record for every store: what outbox stores for a 100-byte
// payload on topic "readings/door" (24-byte header + topic + payload).
var rec = append(append(make([]byte, 24), "readings/door"...), bytes.Repeat([]byte("x"), 100)...)

const payload = 100

// writeBytes is the bytes this process caused to be sent to the block
// layer (page-granular, after the kernel flushes): the flash wear figure.
func writeBytes() int64 {
	b, _ := os.ReadFile("/proc/self/io")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func report(b *testing.B, w0 int64) {
	b.StopTimer()
	w := writeBytes() - w0
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(w)/float64(b.N*payload), "disk_B/payload_B")
}

var batches = []int{10, 1000}

// Append-then-drain cycles: append a batch durably, read it back, release it
// (ack / TruncateFront / Delete): the store's steady state during normal
// operation, where each message is written once and then forgotten.
func BenchmarkOutbox(b *testing.B) {
	for _, bs := range batches {
		b.Run(fmt.Sprint("batch", bs), func(b *testing.B) {
			o, err := outbox.Open(outbox.Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer o.Close()
			ctx := context.Background()
			m := outbox.Message{Topic: "readings/door", QoS: 1, Payload: bytes.Repeat([]byte("x"), payload)}
			w0 := writeBytes()
			b.ResetTimer()
			for done := 0; done < b.N; done += bs {
				var wg sync.WaitGroup
				n := min(bs, b.N-done)
				wg.Add(n)
				for i := 0; i < n; i++ {
					o.AppendAsync(ctx, m, func(uint64, error) { wg.Done() })
				}
				wg.Wait()
				for i := 0; i < n; i++ {
					got, err := o.Next(ctx)
					if err != nil {
						b.Fatal(err)
					}
					o.Ack(got.Seq)
				}
			}
			o.Close()
			report(b, w0)
		})
	}
}

func BenchmarkTidwallWAL(b *testing.B) {
	for _, bs := range batches {
		b.Run(fmt.Sprint("batch", bs), func(b *testing.B) {
			l, err := wal.Open(b.TempDir(), &wal.Options{SegmentSize: 8 << 20, LogFormat: wal.Binary, NoCopy: true})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			var batch wal.Batch
			idx := uint64(1)
			w0 := writeBytes()
			b.ResetTimer()
			for done := 0; done < b.N; done += bs {
				n := min(bs, b.N-done)
				for i := 0; i < n; i++ {
					batch.Write(idx+uint64(i), rec)
				}
				if err := l.WriteBatch(&batch); err != nil { // fsyncs once
					b.Fatal(err)
				}
				for i := 0; i < n; i++ {
					if _, err := l.Read(idx + uint64(i)); err != nil {
						b.Fatal(err)
					}
				}
				idx += uint64(n)
				// Release what was delivered (keep the last one: the log
				// cannot be empty).
				if err := l.TruncateFront(idx - 1); err != nil {
					b.Fatal(err)
				}
			}
			l.Close()
			report(b, w0)
		})
	}
}

func BenchmarkBbolt(b *testing.B) {
	for _, bs := range batches {
		b.Run(fmt.Sprint("batch", bs), func(b *testing.B) {
			db, err := bolt.Open(b.TempDir()+"/q.db", 0o644, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			name := []byte("q")
			db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(name); return err })
			idx := uint64(1)
			key := func(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }
			w0 := writeBytes()
			b.ResetTimer()
			for done := 0; done < b.N; done += bs {
				n := min(bs, b.N-done)
				if err := db.Update(func(tx *bolt.Tx) error {
					bk := tx.Bucket(name)
					for i := 0; i < n; i++ {
						if err := bk.Put(key(idx+uint64(i)), rec); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				if err := db.Update(func(tx *bolt.Tx) error { // read back and delete (ack)
					bk := tx.Bucket(name)
					for i := 0; i < n; i++ {
						if bk.Get(key(idx+uint64(i))) == nil {
							return fmt.Errorf("missing %d", idx+uint64(i))
						}
						if err := bk.Delete(key(idx + uint64(i))); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				idx += uint64(n)
			}
			db.Close()
			report(b, w0)
		})
	}
}

// Append only (an outage: the backlog grows), batches of 1000.
func BenchmarkAppendOnlyOutbox(b *testing.B) {
	o, err := outbox.Open(outbox.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	m := outbox.Message{Topic: "readings/door", QoS: 1, Payload: bytes.Repeat([]byte("x"), payload)}
	w0 := writeBytes()
	b.ResetTimer()
	for done := 0; done < b.N; done += 1000 {
		var wg sync.WaitGroup
		n := min(1000, b.N-done)
		wg.Add(n)
		for i := 0; i < n; i++ {
			o.AppendAsync(context.Background(), m, func(uint64, error) { wg.Done() })
		}
		wg.Wait()
	}
	o.Close()
	report(b, w0)
}

func BenchmarkAppendOnlyTidwallWAL(b *testing.B) {
	l, err := wal.Open(b.TempDir(), &wal.Options{SegmentSize: 8 << 20, LogFormat: wal.Binary, NoCopy: true})
	if err != nil {
		b.Fatal(err)
	}
	var batch wal.Batch
	w0 := writeBytes()
	b.ResetTimer()
	for done := 0; done < b.N; done += 1000 {
		n := min(1000, b.N-done)
		for i := 0; i < n; i++ {
			batch.Write(uint64(done+i+1), rec)
		}
		if err := l.WriteBatch(&batch); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	report(b, w0)
}

func BenchmarkAppendOnlyBbolt(b *testing.B) {
	db, err := bolt.Open(b.TempDir()+"/q.db", 0o644, nil)
	if err != nil {
		b.Fatal(err)
	}
	name := []byte("q")
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(name); return err })
	w0 := writeBytes()
	b.ResetTimer()
	for done := 0; done < b.N; done += 1000 {
		n := min(1000, b.N-done)
		db.Update(func(tx *bolt.Tx) error {
			bk := tx.Bucket(name)
			for i := 0; i < n; i++ {
				bk.Put(binary.BigEndian.AppendUint64(nil, uint64(done+i+1)), rec)
			}
			return nil
		})
	}
	db.Close()
	report(b, w0)
}
