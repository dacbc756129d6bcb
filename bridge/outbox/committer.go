package outbox

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// batch is what one committer pass takes from the queue.
type batch struct {
	buf     []byte
	ents    []entry
	acks    []span
	rels    []releaseReq
	closing bool
	flush   bool // write the tail page now, padded
}

func (b *batch) empty() bool {
	return len(b.ents) == 0 && len(b.acks) == 0 && len(b.rels) == 0
}

// run is the committer: the only goroutine that writes files. Each pass
// takes everything queued, writes it with as few syscalls as it can, fsyncs
// once (per the mode), then completes the callbacks in seq order.
func (o *Outbox) run() {
	defer close(o.doneCh)
	var tick <-chan time.Time
	if o.opts.Fsync == FsyncInterval {
		t := time.NewTicker(o.opts.FsyncInterval)
		defer t.Stop()
		tick = t.C
	}
	// The ack timer runs only while acks wait to be written or the ack log
	// waits for its sync: an idle committer with neither sleeps until it is
	// kicked (Ack kicks it when it finds it so, see ackIdle), so an idle
	// gateway has no 100 ms wake-up here.
	ackT := time.NewTimer(ackInterval)
	ackT.Stop()
	defer ackT.Stop()
	ackArmed := false
	var spareBuf []byte
	var spareEnts []entry
	var lastCommit time.Time
	var retry *time.Timer
	var retryC <-chan time.Time
	backoff := retryMin
	var tailT *time.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
		if tailT != nil {
			tailT.Stop()
		}
	}()
	for {
		if o.opts.CommitInterval > 0 {
			o.waitCommit(lastCommit)
		}
		b := o.take(spareBuf, spareEnts)
		if b.empty() && len(o.held) > 0 && (b.closing || o.tailDue()) {
			b.flush = true
			o.pass(&b)
			continue
		}
		if b.empty() {
			if b.closing {
				o.finish()
				return
			}
			// Idle: give the batch buffers back to the GC, so memory at
			// rest does not keep the size of the last burst.
			spareBuf, spareEnts = nil, nil
			o.mu.Lock()
			if len(o.qents) == 0 {
				o.qbuf, o.qents = nil, nil
			}
			failing := o.failed != nil
			needAck := o.pendAcks.len() > 0 || o.stateDirty
			o.ackIdle = !needAck
			o.mu.Unlock()
			var ackC <-chan time.Time
			if needAck {
				if !ackArmed {
					ackT.Reset(ackInterval)
					ackArmed = true
				}
				ackC = ackT.C
			}
			if failing && retryC == nil {
				if retry == nil {
					retry = time.NewTimer(backoff)
				} else {
					retry.Reset(backoff)
				}
				retryC = retry.C
			}
			var tailC <-chan time.Time
			if len(o.held) > 0 {
				wait := max(time.Millisecond, time.Until(o.held[0].e.queued.Add(o.opts.CommitInterval)))
				if tailT == nil {
					tailT = time.NewTimer(wait)
				} else {
					tailT.Reset(wait)
				}
				tailC = tailT.C
			}
			select {
			case <-tailC:
			case <-retryC:
				retryC = nil
				if err := o.recoverStorage(); err != nil {
					backoff = min(2*backoff, retryMax)
					o.log.Debug("outbox: storage still failing", "err", err, "next_try", backoff)
				} else {
					backoff = retryMin
				}
			case <-o.kick:
			case <-tick:
				if o.dirty {
					if err := o.syncActive(); err != nil {
						o.fail(err, "messages reported stored since the last sync may be lost on a power cut")
					}
				}
			case <-ackC:
				ackArmed = false
				o.mu.Lock()
				if o.pendAcks.len() > 0 {
					// An empty barrier makes the next take a pass.
					o.pendRel = append(o.pendRel, releaseReq{done: func(error) {}})
				}
				o.mu.Unlock()
				o.syncStateLazily()
			}
			continue
		}
		o.pass(&b)
		if len(b.ents) > 0 {
			lastCommit = time.Now()
			spareBuf, spareEnts = b.buf[:0], b.ents[:0]
			clear(spareEnts[:cap(spareEnts)]) // drop the callbacks' references
			if cap(spareBuf) > 4*o.pendingLimit {
				spareBuf = nil // do not keep a burst's buffer forever
			}
		}
	}
}

// waitCommit holds appended messages back until CommitInterval has passed
// since the last commit, so that one commit (one sync) covers every message
// of the interval. It returns at once when nothing is queued (acks and
// release marks do not wait), when a release mark or barrier waits (it
// syncs anyway), when a reader waits, or at Close.
//
// Between commitEarly and commitCap queued bytes it is group commit: the
// commit goes as soon as the queue stops growing (no append for a gap of a
// few times the queue's mean inter-arrival time, at least commitGapMin),
// or at commitCap. A publisher that keeps a bounded window of
// unacknowledged messages stops when its window is queued: one commit then
// covers its whole window, and it is not held to one window per interval
// during an outage (measured by make bench at saturation with a window of
// 500: 452 msg/s when only CommitInterval ended a wait). A steady stream
// (a sensor at 200 msg/s) keeps the queue growing and waits for the
// interval, so its commits are as few as the interval allows: each costs
// about 12 KiB of journal in a fresh (fallocated) segment.
func (o *Outbox) waitCommit(last time.Time) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		o.mu.Lock()
		n := len(o.qents)
		hurry := n == 0 || o.closed || len(o.pendRel) > 0 || len(o.qbuf) >= o.commitCap() || o.readerWaiting > 0
		early := len(o.qbuf) >= o.commitEarly()
		// Commits into written blocks cost no journal: there, a bigger
		// group saves nothing, and committing at once keeps a publisher
		// sending while the commit syncs.
		group := early && o.commitCostsJournal(len(o.qbuf))
		hurry = hurry || (early && !group)
		var idle time.Duration // until the queue counts as stopped
		if group && !hurry {
			first, lastQ := o.qents[0].queued, o.qents[n-1].queued
			idle = commitGap(lastQ.Sub(first), n) - time.Since(lastQ)
		}
		o.mu.Unlock()
		wait := time.Until(last.Add(o.opts.CommitInterval))
		if hurry || wait <= 0 {
			return
		}
		if group {
			if idle <= 0 {
				return // nothing arrived for a whole gap: the queue stopped growing
			}
			wait = min(wait, idle)
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
		case <-o.kick:
		case <-o.closedCh:
			return
		}
	}
}

const (
	// commitEarlyBytes is how much queued data starts group commit before
	// CommitInterval has passed: eight whole pages (committing less saves
	// no page rewrite and costs a journal commit per sync in a fresh
	// segment).
	commitEarlyBytes = 32 << 10
	// commitCapBytes is how much queued data makes a commit go at once.
	commitCapBytes = 256 << 10
	// commitGapMin is the shortest gap in appends that ends a group commit
	// wait (Go's timers on Linux sleep about a millisecond at least).
	commitGapMin = time.Millisecond
	// commitGapFactor is how many mean inter-arrival times without an
	// append mean the queue stopped growing.
	commitGapFactor = 4
)

// commitEarly is the queued size that starts group commit: the lesser of
// commitEarlyBytes and half the queue's limit.
func (o *Outbox) commitEarly() int { return min(o.pendingLimit/2, commitEarlyBytes) }

// commitCap is the queued size that ends a commit interval at once: the
// lesser of commitCapBytes and half the queue's limit (AppendAsync waits
// beyond the limit).
func (o *Outbox) commitCap() int { return max(o.commitEarly(), min(o.pendingLimit/2, commitCapBytes)) }

// commitCostsJournal reports whether committing queued more bytes writes
// into blocks of the active segment that are not written yet, which costs
// ext4 a journal transaction per commit (about 12 KiB).
func (o *Outbox) commitCostsJournal(queued int) bool {
	return o.activeSize+int64(queued) > o.unwrittenFrom
}

// commitGap is how long without an append means the queue stopped
// growing, for n entries queued over span (first to last): commitGapFactor
// times their mean inter-arrival time, at least commitGapMin.
func commitGap(span time.Duration, n int) time.Duration {
	return max(commitGapMin, commitGapFactor*span/time.Duration(max(n-1, 1)))
}

// take swaps out the queue, giving the producers the spare buffers.
func (o *Outbox) take(spareBuf []byte, spareEnts []entry) batch {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := batch{rels: o.pendRel, closing: o.closed}
	if o.pendAcks.len() > 0 {
		b.acks = slices.Clone(o.pendAcks.spans())
		o.pendAcks.reset()
	}
	if len(o.qents) > 0 {
		// The queue's buffers go to this batch; the producers get the
		// spares (never the same arrays: they are written concurrently).
		b.buf, b.ents = o.qbuf, o.qents
		o.qbuf, o.qents = spareBuf, spareEnts
		o.writing = int64(len(b.buf))
		broadcast(&o.spaceCh) // the pending queue has room again
	}
	o.pendRel = nil
	return b
}

func (o *Outbox) pass(b *batch) {
	if o.opts.MaxBytes > 0 && o.opts.Full == DropOldest && len(b.buf) > 0 {
		o.dropOldest(int64(len(b.buf)))
	}
	o.mu.Lock()
	err := o.failed
	o.mu.Unlock()
	if err == nil {
		err = o.writeRecords(b)
	} else {
		for _, e := range b.ents {
			o.held = append(o.held, heldEntry{e: e})
		}
	}
	if err == nil && (len(b.acks) > 0 || len(b.rels) > 0) {
		err = o.writeState(b)
	}
	if err == nil {
		err = o.syncFor(b)
	}
	if err == nil {
		o.syncStateLazily()
	}
	if err != nil {
		o.fail(err, "")
	}
	// The entries due now: every held one whose record is written (all of
	// them after an error), in seq order. Later ones wait for the tail page.
	n := len(o.held)
	if err == nil {
		done := o.streamBase + o.activeOff
		n = 0
		for n < len(o.held) && o.held[n].pos <= done {
			n++
		}
	} else {
		// What was placed but not written is dropped (recoverStorage cuts
		// the segment at its last durable record).
		o.tail = o.tail[:0]
		o.activeSize = o.activeOff
		o.wctx.reset() // it described records not written
		o.mu.Lock()
		last := &o.segs[len(o.segs)-1]
		o.diskBytes += o.activeSize - last.bytes
		last.bytes = o.activeSize
		o.mu.Unlock()
	}
	due := o.held[:n]
	o.mu.Lock()
	o.writing = 0
	if err == nil {
		for _, r := range b.rels {
			if r.seq >= o.floor && !o.acked.has(r.seq) {
				o.released[r.seq] = struct{}{}
			}
		}
	}
	if err != nil {
		for _, h := range due {
			if h.e.err == nil {
				o.st.dropped["storage"]++
			}
		}
	}
	// Callbacks run in seq order with those of messages acknowledged from
	// memory (runCompletions): if another goroutine is running some, hand
	// ours over to it.
	o.inCommit -= len(due)
	handOver := o.cbBusy && len(due) > 0
	if handOver {
		for _, h := range due {
			o.cbQueue = append(o.cbQueue, h.e.completion(err))
		}
	} else if len(due) > 0 {
		o.cbBusy = true
	}
	bt := o.batch
	o.mu.Unlock()
	if !handOver && len(due) > 0 {
		if bt != nil {
			bt.Hold()
		}
		for _, h := range due {
			c := h.e.completion(err)
			c.done(c.seq, c.err)
		}
		o.drainCompletions()
		if bt != nil {
			bt.Release()
		}
	}
	rest := copy(o.held, o.held[n:])
	clear(o.held[rest:])
	o.held = o.held[:rest]
	o.deleteAcked()
	o.maybeCompact()
	for _, r := range b.rels {
		r.done(err)
	}
}

// holdsTail reports whether a partly filled last page may wait in memory:
// under group commit with a commit interval (the flash-friendly setting).
// Without one every pass writes what it has, as soon as it can.
func (o *Outbox) holdsTail() bool {
	return o.opts.Fsync == FsyncBatch && o.opts.CommitInterval > 0
}

// tailDue reports whether the held tail page must be written now: its
// oldest record has waited CommitInterval, or a reader waits for it.
func (o *Outbox) tailDue() bool {
	if len(o.held) == 0 {
		return false
	}
	o.mu.Lock()
	waiting := o.readerWaiting > 0 || o.closed
	o.mu.Unlock()
	return waiting || time.Since(o.held[0].e.queued) >= o.opts.CommitInterval
}

// writeRecords places the batch's records in the active segment's tail
// (a record that does not fit in the rest of its page starts the next
// one: see padBefore), rotating when it would pass SegmentBytes, and
// writes the whole pages. The partly filled last page is written too,
// padded with zeros to its end, unless it may wait (holdsTail) and
// nothing makes it due (tailDue, Close, b.flush). FsyncAlways writes and
// fsyncs record by record.
func (o *Outbox) writeRecords(b *batch) error {
	var written uint64 // records placed in this pass
	// failed holds the entries not placed yet, so that the pass completes
	// them with the error.
	failed := func(from int, err error) error {
		for _, e := range b.ents[from:] {
			o.held = append(o.held, heldEntry{e: e})
		}
		return err
	}
	for i, e := range b.ents {
		if e.err != nil || e.noWrite {
			o.held = append(o.held, heldEntry{e: e, pos: o.streamBase + o.activeSize})
			continue
		}
		v := queuedView(b.buf[e.start:e.end])
		rec, pad, delta := o.placeRecord(&v)
		n := int64(len(rec))
		if o.activeCount > 0 && o.activeSize+pad+n > o.opts.SegmentBytes {
			if err := o.writeTail(o.activeSize); err != nil {
				return failed(i, err)
			}
			if err := o.rotate(e.seq); err != nil {
				return failed(i, err)
			}
			rec, pad, delta = o.placeRecord(&v)
			n = int64(len(rec))
		}
		o.wctx.note((o.activeSize+pad)/pageSize, &v, v.time.UnixMilli()-timeEpochMs, !delta)
		if o.activeCount == 0 {
			o.mu.Lock()
			o.segs[len(o.segs)-1].firstTime = e.t
			o.mu.Unlock()
		}
		o.tail = append(o.tail, make([]byte, pad)...)
		o.tail = append(o.tail, rec...)
		o.activeSize += pad + n
		o.activeCount++
		o.activeNext = e.seq + 1
		o.held = append(o.held, heldEntry{e: e, pos: o.streamBase + o.activeSize})
		written++
		if o.opts.Fsync == FsyncAlways {
			if err := o.writeTail(o.activeSize); err != nil {
				return failed(i+1, err)
			}
			if err := o.syncActive(); err != nil {
				return failed(i+1, err)
			}
		}
	}
	end := o.activeSize
	if o.holdsTail() {
		if b.closing || b.flush || o.tailDue() {
			// Pad the last page: the next commit starts on a new one and
			// never rewrites this one.
			if r := end % pageSize; r != 0 {
				o.tail = append(o.tail, make([]byte, pageSize-r)...)
				end += pageSize - r
				o.activeSize = end
			}
		} else {
			end -= end % pageSize
		}
	}
	if end > o.activeOff {
		if err := o.writeTail(end); err != nil {
			return err
		}
	}
	if written == 0 && end == o.activeOff && !b.flush {
		return nil
	}
	o.mu.Lock()
	last := &o.segs[len(o.segs)-1]
	o.diskBytes += o.activeSize - last.bytes
	last.bytes, last.count = o.activeSize, o.activeCount
	o.writing = 0
	o.mu.Unlock()
	return nil
}

var zeroPage = make([]byte, pageSize)

// placeRecord encodes v as the next version-4 record of the active
// segment: a delta against the records before it in its page if it
// starts in the same page (compact), else absolute. It returns the record
// (valid until the next call), the padding that goes before it and
// whether it is a delta.
func (o *Outbox) placeRecord(v *recView) ([]byte, int64, bool) {
	page := o.activeSize / pageSize
	delta := o.wctx.canDelta(page, v.seq)
	o.recBuf, o.bodyBuf = appendRecordV4(o.recBuf[:0], o.bodyBuf, &o.wctx, v, delta)
	pad := padBefore(o.activeSize, int64(len(o.recBuf)))
	if pad > 0 && delta {
		// It starts the next page: absolute there.
		o.recBuf, o.bodyBuf = appendRecordV4(o.recBuf[:0], o.bodyBuf, &o.wctx, v, false)
		pad, delta = padBefore(o.activeSize, int64(len(o.recBuf))), false
	}
	return o.recBuf, pad, delta
}

// writeTail writes the tail up to file offset end and publishes what is
// written: writtenNext is the seq after the last record wholly written
// (seqs are ascending, not contiguous).
func (o *Outbox) writeTail(end int64) error {
	k := int(end - o.activeOff)
	if k <= 0 {
		return nil
	}
	if err := o.writeActive(o.tail[:k]); err != nil {
		return err
	}
	if r := o.activeOff % pageSize; r != 0 {
		// The rest of a partly written page goes as zeros in the same
		// write-back (the device writes the whole block anyway): in a
		// recycled file, old records there could otherwise be taken for
		// the continuation of the page, whose deltas they do not fit.
		if _, err := o.active.WriteAt(zeroPage[:pageSize-r], o.activeOff); err != nil {
			return fmt.Errorf("write %s: %w", o.active.Name(), err)
		}
	}
	rest := copy(o.tail, o.tail[k:])
	o.tail = o.tail[:rest]
	next := uint64(0)
	done := o.streamBase + o.activeOff
	for _, h := range o.held {
		if h.pos > done {
			break
		}
		if h.e.err == nil && !h.e.noWrite {
			next = h.e.seq + 1
		}
	}
	o.mu.Lock()
	if next > o.writtenNext {
		o.writtenNext = next
	}
	o.writtenOff = o.activeOff
	if o.opts.Fsync == FsyncInterval {
		o.durableNext, o.durableOff = o.writtenNext, o.writtenOff
		broadcast(&o.dataCh)
	}
	o.mu.Unlock()
	o.dirty = true
	return nil
}

func (o *Outbox) writeActive(p []byte) error {
	if _, err := o.active.WriteAt(p, o.activeOff); err != nil {
		return fmt.Errorf("write %s: %w", o.active.Name(), err)
	}
	o.activeOff += int64(len(p))
	o.mu.Lock()
	o.st.bytesWritten += uint64(len(p))
	o.mu.Unlock()
	return nil
}

// syncActive makes the active segment's data durable with fdatasync: a
// commit need not also commit timestamps through the journal.
func (o *Outbox) syncActive() error {
	if err := syncData(o.active); err != nil {
		return fmt.Errorf("fdatasync %s: %w", o.active.Name(), err)
	}
	o.dirty = false
	o.mu.Lock()
	o.st.fsyncs++
	o.mu.Unlock()
	return nil
}

// rotate seals the active segment (fsync) and starts a new one at first.
func (o *Outbox) rotate(first uint64) error {
	if err := o.syncActive(); err != nil {
		return err
	}
	o.mu.Lock()
	last := &o.segs[len(o.segs)-1]
	o.diskBytes += o.activeSize - last.bytes
	last.bytes, last.count = o.activeSize, o.activeCount
	o.writtenNext = o.activeNext
	o.writtenOff = o.activeSize
	o.mu.Unlock()
	o.streamBase += o.activeSize
	if err := o.seal(); err != nil {
		return err
	}
	if err := o.active.Close(); err != nil {
		return fmt.Errorf("close %s: %w", o.active.Name(), err)
	}
	if err := o.createSegment(first); err != nil {
		return err
	}
	f, err := os.OpenFile(o.segPath(first), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	o.active, o.activeFirst, o.activeCount, o.activeSize, o.activeOff = f, first, 0, segHeaderSize, segHeaderSize
	o.wctx.reset()
	o.activeNext = first
	o.mu.Lock()
	o.segs = append(o.segs, segInfo{first: first, bytes: segHeaderSize})
	o.diskBytes += segHeaderSize
	o.writtenOff = segHeaderSize
	o.durableOff = segHeaderSize // nothing of the new segment is durable yet
	o.st.bytesWritten += segHeaderSize
	o.st.fsyncs += 2
	o.mu.Unlock()
	return nil
}

// fail latches a storage error: new messages are refused from now on.
// lost says what an error discovered late (a periodic sync) may have cost.
func (o *Outbox) fail(err error, lost string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failed != nil {
		return
	}
	o.failed = fmt.Errorf("outbox: %w", err)
	attrs := []any{"dir", o.opts.Dir, "err", err}
	if lost != "" {
		attrs = append(attrs, "lost", lost)
	}
	attrs = append(attrs, "what_to_do", "free space on the file system of data_dir or make it writable again; the outbox retries by itself")
	o.log.Error("outbox: storage failed; refusing new messages until it works again", attrs...)
}

// syncStateLazily makes written acknowledgements durable at most once per
// ackSyncInterval while they change: after a power cut at most that long
// (plus ackInterval) of acknowledgements is lost, and those messages are
// sent again; without it the ack log was synced only at compaction, and a
// power cut resent everything delivered since.
func (o *Outbox) syncStateLazily() {
	if !o.stateDirty || time.Since(o.stateSynced) < ackSyncInterval {
		return
	}
	if err := fdatasync(o.stateF); err != nil {
		// Not fatal: a lost ack only causes a resend; retried next time.
		o.log.Warn("outbox: cannot sync the ack log; acknowledged messages may be resent after a power cut", "dir", o.opts.Dir, "err", err)
		o.stateSynced = time.Now()
		return
	}
	o.stateDirty, o.stateSynced = false, time.Now()
	o.mu.Lock()
	o.st.fsyncs++
	o.mu.Unlock()
}

// writeState appends ack ranges and release marks to the ack log.
func (o *Outbox) writeState(b *batch) error {
	buf := make([]byte, 0, (len(b.acks)+len(b.rels))*stateRecSize)
	for _, sp := range b.acks {
		buf = appendStateRec(buf, stAcks, sp.lo, sp.hi)
	}
	for _, r := range b.rels {
		if r.seq != 0 { // seq 0 is a barrier (see flush)
			buf = appendStateRec(buf, stRelease, r.seq, 0)
		}
	}
	if len(buf) == 0 {
		return nil
	}
	if _, err := o.stateF.Write(buf); err != nil {
		return fmt.Errorf("write ack log: %w", err)
	}
	o.stateSize += int64(len(buf))
	o.stateDirty = true
	o.mu.Lock()
	o.st.bytesWritten += uint64(len(buf))
	o.mu.Unlock()
	return nil
}

// syncFor fsyncs what the mode requires and publishes the durable seq.
// Release marks are always fsync'd, together with the segment holding
// their message.
func (o *Outbox) syncFor(b *batch) error {
	marks := false // real release marks, not barriers
	for _, r := range b.rels {
		marks = marks || r.seq != 0
	}
	if o.dirty && (o.opts.Fsync != FsyncInterval || marks) {
		if err := o.syncActive(); err != nil {
			return err
		}
	}
	if marks {
		if err := fdatasync(o.stateF); err != nil {
			return fmt.Errorf("fdatasync ack log: %w", err)
		}
		o.stateDirty, o.stateSynced = false, time.Now()
		o.mu.Lock()
		o.st.fsyncs++
		o.mu.Unlock()
	}
	if o.opts.Fsync != FsyncInterval {
		o.mu.Lock()
		if o.durableNext != o.writtenNext {
			o.durableNext = o.writtenNext
			broadcast(&o.dataCh)
		}
		o.durableOff = o.writtenOff
		o.mu.Unlock()
	}
	return nil
}

// dropOldest deletes the oldest segments until incoming more bytes fit
// under MaxBytes, counting the unacknowledged messages they held.
func (o *Outbox) dropOldest(incoming int64) {
	var del []uint64
	o.mu.Lock()
	for o.diskBytes+incoming > o.opts.MaxBytes && len(o.segs) > 1 {
		s0, s1 := o.segs[0], o.segs[1]
		lo := max(o.floor, s0.first)
		n := o.ackLocked(lo, s1.first)
		o.pendAcks.add(lo, s1.first)
		o.st.dropped["full_oldest"] += n
		o.epOldest.drop(o.log, n, "max_bytes", o.opts.MaxBytes, "file", segName(s0.first))
		o.diskBytes -= s0.bytes
		o.segs = o.segs[1:]
		del = append(del, s0.first)
	}
	o.mu.Unlock()
	o.removeSegments(del)
}

// deleteAcked removes sealed segments whose every message is acknowledged.
func (o *Outbox) deleteAcked() {
	var del []uint64
	o.mu.Lock()
	for len(o.segs) > 1 && o.segs[1].first <= o.floor {
		del = append(del, o.segs[0].first)
		o.diskBytes -= o.segs[0].bytes
		o.segs = o.segs[1:]
	}
	if len(del) > 0 {
		o.endFullEpisodesLocked()
		broadcast(&o.spaceCh)
	}
	o.mu.Unlock()
	o.removeSegments(del)
}

// endFullEpisodesLocked ends full-buffer episodes once usage is back under
// three quarters of MaxBytes (the hysteresis keeps a buffer hovering at the
// limit from logging every segment).
func (o *Outbox) endFullEpisodesLocked() {
	if o.opts.MaxBytes == 0 || o.usageLocked() > o.opts.MaxBytes*3/4 {
		return
	}
	o.epOldest.end(o.log)
	o.epNewest.end(o.log)
	o.epBlock.end(o.log)
}

func (o *Outbox) removeSegments(firsts []uint64) {
	if len(firsts) == 0 {
		return
	}
	for _, f := range firsts {
		if len(o.spares) < maxSpares {
			// Kept for a later segment: its blocks are written already,
			// so commits into it need no journal (see recycle.go).
			spare := filepath.Join(o.opts.Dir, spareName(f))
			if err := os.Rename(o.segPath(f), spare); err == nil {
				o.spares = append(o.spares, spare)
				continue
			}
		}
		if err := os.Remove(o.segPath(f)); err != nil {
			o.log.Warn("outbox: cannot delete acknowledged segment", "file", o.segPath(f), "err", err)
		}
	}
	if err := syncDir(o.opts.Dir); err != nil {
		o.log.Warn("outbox: cannot sync dir after deleting segments", "dir", o.opts.Dir, "err", err)
	}
}

// maybeCompact rewrites the ack log as a snapshot once it has grown.
func (o *Outbox) maybeCompact() {
	if o.stateSize < stateCompactBytes {
		return
	}
	o.compact()
}

func (o *Outbox) compact() error {
	o.mu.Lock()
	floor := o.floor
	acked := slices.Clone(o.acked.spans())
	rel := make([]uint64, 0, len(o.released))
	for s := range o.released {
		rel = append(rel, s)
	}
	// Pending acks are in the snapshot: they need not be written again.
	o.pendAcks.reset()
	o.mu.Unlock()
	f, size, err := writeStateSnapshot(o.opts.Dir, floor, acked, rel)
	if err != nil {
		o.log.Warn("outbox: cannot compact the ack log; will retry", "dir", o.opts.Dir, "err", err)
		o.mu.Lock()
		o.pendAcks.add(1, floor) // the floor, as a range
		for _, sp := range acked {
			o.pendAcks.add(sp.lo, sp.hi)
		}
		o.mu.Unlock()
		return err
	}
	o.stateF.Close()
	o.stateF, o.stateSize, o.stateDirty = f, size, false
	o.mu.Lock()
	o.st.bytesWritten += uint64(size)
	o.st.fsyncs += 2
	o.mu.Unlock()
	return nil
}

// finish flushes and closes at Close: the queue is empty by now.
func (o *Outbox) finish() {
	o.mu.Lock()
	crash := o.testCrash
	o.mu.Unlock()
	if crash {
		o.active.Close()
		o.stateF.Close()
		return
	}
	var err error
	if o.dirty {
		err = o.syncActive()
	}
	_ = o.compact() // logged; the appended log is still valid
	if serr := o.stateF.Sync(); err == nil && serr != nil {
		err = serr
	}
	if cerr := o.active.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if cerr := o.stateF.Close(); err == nil && cerr != nil {
		err = cerr
	}
	o.mu.Lock()
	if err != nil && o.failed == nil {
		o.failed = fmt.Errorf("outbox: close: %w", err)
	}
	o.mu.Unlock()
}

// completion is the callback due for e after a pass that ended with err.
func (e *entry) completion(err error) completion {
	switch {
	case e.err != nil:
		return completion{done: e.done, err: e.err}
	case e.noWrite:
		return completion{done: e.done, seq: e.seq} // safe upstream already
	case err != nil:
		return completion{done: e.done, seq: e.seq, err: err}
	}
	return completion{done: e.done, seq: e.seq}
}
