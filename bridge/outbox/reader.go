package outbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// boundedFile reads a file from off up to limit (no limit if negative):
// the active segment is preallocated, so past its written records it reads
// zeros, which the reader must not buffer as if they were records.
type boundedFile struct {
	f          *os.File
	off, limit int64
}

func (b *boundedFile) Read(p []byte) (int, error) {
	if b.limit >= 0 {
		if b.off >= b.limit {
			return 0, io.EOF
		}
		p = p[:min(int64(len(p)), b.limit-b.off)]
	}
	n, err := b.f.ReadAt(p, b.off)
	b.off += int64(n)
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}

// segReader reads one segment file sequentially through a buffer.
type segReader struct {
	f     *os.File
	bf    boundedFile
	br    *bufio.Reader
	rr    recordReader
	first uint64 // segment open
	ver   byte   // its record version
	pos   uint64 // the lowest seq the next record in the stream may carry
}

func (r *segReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// open positions the reader at offset off of segment first, where the
// record with seq pos starts (off 0: at the start, header checked); it
// reads no further than limit (no limit if negative).
func (r *segReader) open(path string, first uint64, off int64, pos uint64, limit int64) error {
	r.close()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	r.bf = boundedFile{f: f, limit: limit}
	if r.br == nil {
		r.br = bufio.NewReaderSize(&r.bf, 256<<10)
	} else {
		r.br.Reset(&r.bf)
	}
	r.f, r.first = f, first
	if off == 0 {
		// A damaged header costs nothing: the records carry their own
		// checksums and seqs, and readSeq checks both.
		hdr := make([]byte, segHeaderSize)
		if _, err := io.ReadFull(r.br, hdr); err != nil {
			return fmt.Errorf("%w: header: %v", errCorrupt, err)
		}
		if r.ver, err = checkSegHeader(hdr, first); err != nil {
			fi, serr := f.Stat()
			if serr != nil {
				return serr
			}
			r.ver = guessVersion(f, hdr, first, fi.Size())
		}
		off, pos = segHeaderSize, first
	} else {
		// Only the active segment is opened mid-way, and it is always of
		// the version written. A record there may be a delta against the
		// records before it in its page: read them first for the context.
		r.ver = segVersion
		from := max(off-off%pageSize, segHeaderSize)
		r.bf.off = from
		r.br.Reset(&r.bf)
		r.rr = recordReader{r: r.br, ver: r.ver, off: from, buf: r.rr.buf, ctx: r.rr.ctx}
		r.rr.ctx.reset()
		for r.rr.off < off {
			if _, err := r.rr.nextBody(); err != nil {
				break
			}
		}
		if r.rr.off != off {
			r.rr.ctx.reset() // damaged: the page's later records are lost
			r.bf.off = off
			r.br.Reset(&r.bf)
			r.rr.off = off
		}
		r.pos = pos
		return nil
	}
	r.rr = recordReader{r: r.br, ver: r.ver, off: off, buf: r.rr.buf, ctx: r.rr.ctx}
	r.rr.ctx.reset()
	r.pos = pos
	return nil
}

// errShort means a segment ended before the wanted record.
var errShort = errors.New("segment ends before the wanted record")

// damagedError is a stretch of a segment without a whole record, followed
// by one (seq nextSeq) that the reader resynchronised on.
type damagedError struct {
	off, bytes int64
	nextSeq    uint64
	cause      error
}

func (e *damagedError) Error() string {
	return fmt.Sprintf("%d damaged bytes at offset %d (%v); records resume at seq %d", e.bytes, e.off, e.cause, e.nextSeq)
}

// readSeq returns the record with seq want, or, if want is not in the
// segment, the next one after it (seqs ascend but may have gaps), reading
// forward from the current position (reopening the segment if want is
// behind it) but no further than byte limit of the file (none if
// negative). Records must carry seqs in [first, end). On a damaged record
// it resynchronises on the next whole one and returns a *damagedError; it
// returns errCorrupt (wrapped) if no whole record follows the damage.
func (r *segReader) readSeq(path string, first, want, end uint64, limit int64) (Message, error) {
	if r.f == nil || r.first != first || r.pos > want {
		if err := r.open(path, first, 0, 0, limit); err != nil {
			r.close()
			return Message{}, err
		}
	}
	r.bf.limit = limit
	for {
		_, err := r.rr.nextBody()
		if err == io.EOF {
			return Message{}, errShort
		}
		var v recView
		if err == nil {
			v = r.rr.v
			if v.seq < r.pos || v.seq >= end {
				err = fmt.Errorf("%w: seq %d outside [%d, %d)", errCorrupt, v.seq, r.pos, end)
			}
		}
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				r.close()
				return Message{}, err
			}
			return Message{}, r.resync(err, end)
		}
		r.pos = v.seq + 1
		if v.seq >= want {
			return decodeView(v), nil
		}
	}
}

// resync moves the reader past a damaged record at its current offset to
// the next whole record, returning a *damagedError, or cause if none.
func (r *segReader) resync(cause error, end uint64) error {
	bad, lim := r.rr.off, r.bf.limit
	if lim < 0 {
		fi, err := r.f.Stat()
		if err != nil {
			r.close()
			return err
		}
		lim = fi.Size()
	}
	at, seq, found, err := findRecord(r.f, r.ver, bad+1, lim, r.pos, end)
	if err != nil || !found {
		r.close()
		if err != nil {
			return err
		}
		return cause
	}
	r.bf.off = at
	r.br.Reset(&r.bf)
	r.rr = recordReader{r: r.br, ver: r.ver, off: at, buf: r.rr.buf, ctx: r.rr.ctx}
	r.rr.ctx.reset()
	return &damagedError{off: bad, bytes: at - bad, nextSeq: seq, cause: cause}
}

// Next blocks until a message past the read cursor is durable or in the
// memory window (or ctx ends, or the outbox closes) and returns it,
// advancing the cursor. Below the window it returns only durable messages,
// from disk; from the window at once. It skips acknowledged messages and
// seq gaps (seqs acknowledged from memory in an earlier run), drops and
// counts expired ones (MaxAge), and drops and counts damaged records
// (logged at Error), resynchronising on the next whole one.
func (o *Outbox) Next(ctx context.Context) (Message, error) {
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return Message{}, ErrClosed
		}
		o.skipAckedLocked()
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
			// A reader waiting at the end means the link is up and keeping
			// up: the committer does not hold messages back for it.
			o.readerWaiting++
			hurry := o.inCommit > 0 && o.opts.CommitInterval > 0
			o.mu.Unlock()
			if hurry {
				o.wake()
			}
			var err error
			select {
			case <-ch:
			case <-ctx.Done():
				err = ctx.Err()
			case <-o.closedCh:
				err = ErrClosed
			}
			o.mu.Lock()
			o.readerWaiting--
			o.mu.Unlock()
			if err != nil {
				return Message{}, err
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
		// Read no further than what is durable: with seq gaps, the record
		// after a missing seq may be written but not yet synced.
		limit := o.durableOff
		if i+1 < len(o.segs) {
			end, limit = o.segs[i+1].first, -1
		}
		o.mu.Unlock()

		o.rmu.Lock()
		if o.rdPath == "" || o.rdPathFirst != first {
			// Formatting the name costs more than reading the record.
			o.rdPath, o.rdPathFirst = o.segPath(first), first
		}
		path := o.rdPath
		m, err := o.rd.readSeq(path, first, want, end, limit)
		o.rmu.Unlock()

		o.mu.Lock()
		if gen != o.rgen {
			o.mu.Unlock()
			continue // rewound meanwhile
		}
		var dmg *damagedError
		if errors.As(err, &dmg) {
			o.dropDamagedLocked(path, want, dmg)
			o.mu.Unlock()
			continue
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
		if o.ackIdle {
			o.ackIdle = false
			o.wake()
		}
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
		if err := o.rd.open(path, first, off, end, off); err != nil {
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

// dropDamagedLocked drops the records lost in a damaged stretch the reader
// resynchronised past: the seqs from want up to the next whole record.
// Damage before want (met again on a re-read) costs nothing more.
func (o *Outbox) dropDamagedLocked(path string, want uint64, d *damagedError) {
	if d.nextSeq <= want {
		return
	}
	n := o.ackLocked(want, d.nextSeq)
	o.pendAcks.add(want, d.nextSeq)
	o.st.dropped["corrupt"] += n
	o.st.skippedBytes += uint64(d.bytes)
	o.cursor = max(o.cursor, d.nextSeq)
	o.log.Error("outbox: damaged records skipped", "file", path, "offset", d.off, "bytes", d.bytes,
		"from_seq", want, "to_seq", d.nextSeq-1, "messages", n, "err", d.cause,
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

// skipAckedLocked moves the read cursor past the floor and past every
// seq already acknowledged. o.mu is held.
func (o *Outbox) skipAckedLocked() {
	if o.cursor < o.floor {
		o.cursor = o.floor
	}
	for o.cursor < o.nextSeq && o.acked.has(o.cursor) {
		o.cursor = o.acked.spanEnd(o.cursor)
	}
}
