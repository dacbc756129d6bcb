package outbox

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// segReader reads one segment file sequentially through a buffer.
type segReader struct {
	f     *os.File
	br    *bufio.Reader
	rr    recordReader
	first uint64 // segment open
	pos   uint64 // the next record in the stream has a seq at or above it
}

func (r *segReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// open positions the reader at offset off of segment first, where the
// record with seq pos starts (off 0: at the start, header checked).
func (r *segReader) open(path string, first uint64, off int64, pos uint64) error {
	r.close()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if r.br == nil {
		r.br = bufio.NewReaderSize(f, 256<<10)
	} else {
		r.br.Reset(f)
	}
	r.f, r.first = f, first
	if off == 0 {
		hdr := make([]byte, segHeaderSize)
		if _, err := io.ReadFull(r.br, hdr); err != nil {
			return fmt.Errorf("%w: header: %v", errCorrupt, err)
		}
		if err := checkSegHeader(hdr, first); err != nil {
			return fmt.Errorf("%w: header: %v", errCorrupt, err)
		}
		off, pos = segHeaderSize, first
	} else if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	} else {
		r.br.Reset(f)
	}
	r.rr = recordReader{r: r.br, off: off, buf: r.rr.buf}
	r.pos = pos
	return nil
}

// errShort means a segment ended before the wanted seq.
var errShort = errors.New("segment ends before the wanted record")

// readSeq returns the first record with a seq at or above want, reading
// forward from the current position (reopening the segment if want is
// behind it). Seqs ascend but may have gaps (acknowledged from memory,
// never written): the caller treats a gap as done.
func (r *segReader) readSeq(path string, first, want uint64) (Message, error) {
	if r.f == nil || r.first != first || r.pos > want {
		if err := r.open(path, first, 0, 0); err != nil {
			r.close()
			return Message{}, err
		}
	}
	for {
		body, err := r.rr.nextBody()
		if err == io.EOF {
			return Message{}, errShort
		}
		if err != nil {
			r.close()
			return Message{}, err
		}
		seq := binary.LittleEndian.Uint64(body[0:])
		if seq < r.pos {
			r.close()
			return Message{}, fmt.Errorf("%w: seq %d where %d or above was expected", errCorrupt, seq, r.pos)
		}
		r.pos = seq + 1
		if seq >= want {
			return decodeBody(body)
		}
	}
}

// Next blocks until a message past the read cursor is durable or in the
// memory window (or ctx ends, or the outbox closes) and returns it,
// advancing the cursor. Below the window it returns only durable messages,
// from disk; from the window at once. It skips acknowledged messages and
// seq gaps (seqs acknowledged from memory in an earlier run), drops and
// counts expired ones (MaxAge), and drops and counts records it cannot
// read (logged at Error).
func (o *Outbox) Next(ctx context.Context) (Message, error) {
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return Message{}, ErrClosed
		}
		if o.cursor < o.floor {
			o.cursor = o.floor
		}
		for o.cursor < o.nextSeq && o.acked.has(o.cursor) {
			o.cursor = o.acked.spanEnd(o.cursor)
		}
		if len(o.mem) > 0 && o.cursor >= o.mem[0].m.Seq {
			if m, ok := o.nextFromMemoryLocked(); ok {
				o.mu.Unlock()
				return m, nil
			}
		}
		if o.cursor >= o.durableNext {
			o.nextWaiting = true
			ch := o.dataCh
			if o.testOnWait != nil {
				o.testOnWait()
			}
			o.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return Message{}, ctx.Err()
			case <-o.closedCh:
				return Message{}, ErrClosed
			}
			continue
		}
		want, gen := o.cursor, o.rgen
		i := len(o.segs) - 1
		for i > 0 && o.segs[i].first > want {
			i--
		}
		first := o.segs[i].first
		end := o.writtenNext // exclusive end of the records in this segment
		if i+1 < len(o.segs) {
			end = o.segs[i+1].first
		}
		o.mu.Unlock()

		o.rmu.Lock()
		if o.rdPath == "" || o.rdPathFirst != first {
			// Formatting the name costs more than reading the record.
			o.rdPath, o.rdPathFirst = o.segPath(first), first
		}
		path := o.rdPath
		m, err := o.rd.readSeq(path, first, want)
		o.rmu.Unlock()

		o.mu.Lock()
		if gen != o.rgen {
			o.mu.Unlock()
			continue // rewound meanwhile
		}
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && (len(o.segs) == 0 || o.segs[0].first > first) {
				o.mu.Unlock()
				continue // deleted meanwhile (acknowledged or dropped)
			}
			if errors.Is(err, errShort) && (len(o.segs) == 0 || o.segs[len(o.segs)-1].first != first) {
				// A sealed segment ends before the next one starts: a gap.
				o.skipGapLocked(want, end)
				o.mu.Unlock()
				continue
			}
			if !errors.Is(err, errCorrupt) && !errors.Is(err, errShort) && !errors.Is(err, os.ErrNotExist) {
				o.mu.Unlock()
				return Message{}, fmt.Errorf("outbox: read %s: %w", path, err)
			}
			o.dropCorruptLocked(path, first, want, end, err)
			o.mu.Unlock()
			continue
		}
		if m.Seq > want {
			o.skipGapLocked(want, m.Seq)
			if m.Seq >= o.durableNext {
				o.mu.Unlock()
				continue // written but not yet durable: wait for it
			}
			want = m.Seq
		}
		o.cursor = want + 1
		if want < o.floor || o.acked.has(want) {
			o.mu.Unlock()
			continue
		}
		if o.opts.MaxAge > 0 && o.opts.Now().Sub(m.Time) > o.opts.MaxAge {
			o.ackLocked(want, want+1)
			o.pendAcks.add(want, want+1)
			o.st.dropped["expired"]++
			o.epExpired.drop(o.log, 1, "max_age", o.opts.MaxAge, "seq", want)
			o.mu.Unlock()
			o.wake()
			continue
		}
		o.epExpired.end(o.log)
		if _, ok := o.released[want]; ok {
			m.Released = true
		}
		if want <= o.maxGiven {
			o.st.replayed++
		} else {
			o.maxGiven = want
		}
		o.mu.Unlock()
		return m, nil
	}
}

// skipGapLocked treats the seqs [lo, hi) that are not on disk as done:
// they were acknowledged from memory (in an earlier run: this run's are
// acknowledged already) and never written.
func (o *Outbox) skipGapLocked(lo, hi uint64) {
	if n := o.ackLocked(lo, hi); n > 0 {
		o.pendAcks.add(lo, hi)
		o.log.Debug("outbox: seq gap skipped (acknowledged from memory, never written)", "from_seq", lo, "to_seq", hi-1)
	}
	o.cursor = max(o.cursor, hi)
}

// dropCorruptLocked drops the unreadable records [want, end) of segment
// first and moves the reader past them.
func (o *Outbox) dropCorruptLocked(path string, first, want, end uint64, cause error) {
	activeSeg := o.segs[len(o.segs)-1].first == first
	if activeSeg {
		// Resume at the end of what is written: the reader can seek there.
		end = o.writtenNext
		off := o.writtenOff
		o.rmu.Lock()
		if err := o.rd.open(path, first, off, end); err != nil {
			o.rd.close()
		}
		o.rmu.Unlock()
	}
	n := o.ackLocked(want, end)
	o.pendAcks.add(want, end)
	o.st.dropped["corrupt"] += n
	o.cursor = max(o.cursor, end)
	o.log.Error("outbox: unreadable records skipped", "file", path, "from_seq", want, "to_seq", end-1, "messages", n, "err", cause,
		"what_to_do", "the storage returned damaged data; check the SD card or disk")
	o.wake()
}

// Rewind moves the cursor back to the first unacknowledged message: on
// reconnect everything unacknowledged is sent again, in order.
func (o *Outbox) Rewind() {
	o.mu.Lock()
	o.cursor = o.floor
	o.rgen++
	broadcast(&o.dataCh) // a Next waiting at the end sees the rewound cursor
	o.mu.Unlock()
}
