package outbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// recover rebuilds the in-memory index from the directory. Sealed segments
// are not read: their counts are taken as next.first - first (an upper
// bound: seqs acknowledged from memory never reach disk, so a segment's
// seqs ascend with gaps) and their sizes from stat;
// only their first record's time is read. The last segment, the only one a
// crash can tear (a segment is fsync'd before the next one is created), is
// scanned and cut at its last whole record. The tail of the log (up to
// recentScanBytes) is also read to rebuild the RecentOrigin window.
func (o *Outbox) recover() error {
	dir := o.opts.Dir
	_ = os.Remove(filepath.Join(dir, stateTmpName))
	st, good, cut, err := loadState(filepath.Join(dir, stateName))
	if err != nil {
		return fmt.Errorf("read ack log: %w", err)
	}
	if cut > 0 {
		o.log.Warn("outbox: cut torn tail of the ack log; acks in it will be resent", "file", filepath.Join(dir, stateName), "offset", good, "bytes", cut)
	}
	firsts, err := listSegments(dir)
	if err != nil {
		return fmt.Errorf("list segments: %w", err)
	}
	if o.spares, err = listSpares(dir); err != nil {
		return fmt.Errorf("list spare segments: %w", err)
	}
	if len(firsts) == 0 {
		if st.floor == 0 && len(o.spares) == 0 && o.holdsTail() {
			o.prefill()
		}
		// Fresh, or every segment deleted: the ack floor carries the next seq.
		if err := o.createSegment(max(1, st.floor)); err != nil {
			return err
		}
		firsts = []uint64{max(1, st.floor)}
	}
	// Segments whose records are read for the RecentOrigin window.
	scanFrom := len(firsts) - 1
	var budget int64
	for i := len(firsts) - 1; i >= 0; i-- {
		fi, err := os.Stat(o.segPath(firsts[i]))
		if err != nil {
			return err
		}
		budget += fi.Size()
		if budget > recentScanBytes && i < len(firsts)-1 {
			break
		}
		scanFrom = i
	}
	visit := func(v recView) {
		if v.qos == 2 && len(v.origin) > 0 {
			o.recent.add(makeOriginKey(string(v.origin), v.pid), v.seq)
		}
	}
	for i := 0; i < len(firsts)-1; i++ {
		path := o.segPath(firsts[i])
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		si := segInfo{first: firsts[i], count: firsts[i+1] - firsts[i], bytes: fi.Size()}
		if i >= scanFrom {
			res, err := scanSegment(path, firsts[i], visit)
			if err != nil {
				return fmt.Errorf("read %s: %w", path, err)
			}
			si.firstTime = res.firstTime
		} else if si.firstTime, err = readFirstTime(path, firsts[i]); err != nil {
			// Not fatal: the reader meets the damage later and counts it.
			o.log.Warn("outbox: sealed segment has a bad start; its messages will be counted as corrupt when reached", "file", path, "err", err)
		}
		o.segs = append(o.segs, si)
		o.diskBytes += si.bytes
	}
	last := firsts[len(firsts)-1]
	path := o.segPath(last)
	res, err := scanSegment(path, last, visit)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var lost []span // seqs in damaged stretches of the last segment
	if res.badHeader && res.count > 0 {
		// The records are whole: a damaged header must not discard them.
		o.log.Error("outbox: last segment has a damaged header; rewriting it and keeping its records", "file", path, "records_kept", res.count, "reason", res.reason,
			"what_to_do", "the storage returned damaged data; check the SD card or disk")
		if err := writeSync(path, encodeSegHeaderV(last, res.version), 0); err != nil {
			return fmt.Errorf("rewrite header of %s: %w", path, err)
		}
		res.badHeader = false
	}
	for _, d := range res.damaged {
		o.log.Error("outbox: damaged records skipped in the last segment", "file", path, "offset", d.off, "bytes", d.bytes,
			"from_seq", d.fromSeq, "to_seq", d.nextSeq-1, "err", d.reason,
			"what_to_do", "the storage returned damaged data; check the SD card or disk")
		o.st.skippedBytes += uint64(d.bytes)
		lost = append(lost, span{d.fromSeq, d.nextSeq})
	}
	if res.badHeader {
		o.log.Warn("outbox: last segment has a bad header; rewriting it empty", "file", path, "bytes", res.fileSize, "reason", res.reason)
		o.st.tailCut += uint64(res.fileSize)
		if err := os.Remove(path); err != nil {
			return err
		}
		if err := o.createSegment(last); err != nil {
			return err
		}
		res = scanResult{goodSize: segHeaderSize, fileSize: segHeaderSize}
	} else if res.goodSize < res.fileSize {
		// A preallocated segment (as long as SegmentBytes) reads as zeros
		// past its data: only non-zero bytes after the last whole record
		// are a torn tail. A shorter file (written by 0.1, or cut short)
		// ends where its size says.
		dataEnd := res.fileSize
		if res.fileSize >= o.opts.SegmentBytes {
			dataEnd = res.dataEnd
		}
		if res.stale {
			// A recycled file: what follows the records is its old
			// contents (records of lower seqs), not a torn tail; new
			// records overwrite it.
			dataEnd = res.goodSize
		}
		// Zeros are not a torn tail: a commit writes the rest of a partly
		// filled page as zeros, also in a file that is not preallocated.
		if torn := min(dataEnd, res.dataEnd); torn > res.goodSize {
			o.log.Warn("outbox: cut torn or corrupt tail of the last segment", "file", path, "offset", res.goodSize, "bytes", torn-res.goodSize, "records_kept", res.count, "reason", res.reason)
			o.st.tailCut += uint64(torn - res.goodSize)
		}
		if dataEnd < res.fileSize {
			if dataEnd > res.goodSize {
				if err := zeroSync(path, res.goodSize, dataEnd); err != nil {
					return fmt.Errorf("cut tail of %s: %w", path, err)
				}
			}
		} else if err := truncateSync(path, res.goodSize); err != nil {
			return fmt.Errorf("cut tail of %s: %w", path, err)
		}
	}
	if res.version != segVersion && !res.badHeader {
		// Written by an earlier version: records of the version written
		// now go to a new segment; this one is sealed at its records.
		if res.count > 0 {
			if fi, err := os.Stat(path); err != nil {
				return err
			} else if fi.Size() > res.goodSize {
				if err := truncateSync(path, res.goodSize); err != nil {
					return fmt.Errorf("seal %s: %w", path, err)
				}
			}
			o.segs = append(o.segs, segInfo{first: last, count: res.count, bytes: res.goodSize, firstTime: res.firstTime})
			o.diskBytes += res.goodSize
			last = res.lastSeq + 1
		} else if err := os.Remove(path); err != nil {
			return err
		}
		if err := o.createSegment(last); err != nil {
			return err
		}
		path = o.segPath(last)
		res = scanResult{goodSize: segHeaderSize, fileSize: segHeaderSize}
	}
	o.segs = append(o.segs, segInfo{first: last, count: res.count, bytes: res.goodSize, firstTime: res.firstTime})
	o.diskBytes += res.goodSize
	o.nextSeq = last
	if res.count > 0 {
		o.nextSeq = res.lastSeq + 1
	}

	// Acknowledgement state.
	o.floor = max(st.floor, o.segs[0].first)
	if hi := max(o.floor, st.acked.maxSeq()); hi > o.nextSeq {
		// Acked seqs beyond the log's end: messages acknowledged from
		// memory (never written), or written-but-unsynced records a power
		// loss took in FsyncInterval mode. Never reuse them (a new message
		// would count as acknowledged); start a new segment there.
		o.log.Info("outbox: acknowledged seqs beyond the last stored message; continuing after them", "next_seq", o.nextSeq, "ack_floor", o.floor, "acked_up_to", hi-1)
		o.nextSeq = hi
		if res.count == 0 {
			if err := os.Remove(path); err != nil {
				return err
			}
			o.diskBytes -= o.segs[len(o.segs)-1].bytes
			o.segs = o.segs[:len(o.segs)-1]
		}
		if err := o.createSegment(o.nextSeq); err != nil {
			return err
		}
		o.segs = append(o.segs, segInfo{first: o.nextSeq, bytes: segHeaderSize})
		o.diskBytes += segHeaderSize
	}
	o.acked = st.acked
	o.acked.trimBelow(o.floor)
	o.floor = o.acked.popFrom(o.floor)
	for _, sp := range lost {
		n := o.ackLocked(sp.lo, sp.hi)
		o.pendAcks.add(sp.lo, sp.hi)
		o.st.dropped["corrupt"] += n
	}
	for s := range st.released {
		if s >= o.floor && s < o.nextSeq && !o.acked.has(s) {
			o.released[s] = struct{}{}
		}
	}
	o.writtenNext, o.durableNext = o.nextSeq, o.nextSeq
	o.cursor = o.floor

	// Open the active segment and the ack log for appending.
	a := o.segs[len(o.segs)-1]
	f, err := os.OpenFile(o.segPath(a.first), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	o.active, o.activeFirst, o.activeCount, o.activeSize, o.activeOff = f, a.first, a.count, a.bytes, a.bytes
	if o.unwrittenSeg != a.first {
		// An earlier run's segment: whether its blocks are written is not
		// known, so commits are taken to cost the journal.
		o.unwrittenFrom = 0
	}
	// The first commit continues the last page: its records are deltas
	// against the ones there (placeRecord starts afresh on a new page).
	o.wctx.reset()
	if a.first == last && res.count > 0 && res.version == segVersion {
		o.wctx = res.ctx
	}
	o.activeNext = o.nextSeq
	if fi, err := f.Stat(); err == nil && fi.Size() < o.opts.SegmentBytes {
		// Written by 0.1, or cut back: preallocate its rest now.
		if err := o.preallocate(f, fi.Size()); err != nil {
			o.log.Warn("outbox: cannot preallocate the active segment; appends will also commit its size", "file", f.Name(), "err", err)
		}
	}
	o.writtenOff, o.durableOff = a.bytes, a.bytes
	if o.stateF, o.stateSize, err = openStateLog(dir, good); err != nil {
		return fmt.Errorf("open ack log: %w", err)
	}
	return nil
}

// createSegment creates an empty segment file with its header, durably.
func (o *Outbox) createSegment(first uint64) error {
	path := o.segPath(first)
	f, from, err := o.reuseSpare(path)
	if err != nil {
		return err
	}
	if f == nil {
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm); err != nil {
			return err
		}
		from = segHeaderSize
	}
	_, err = f.WriteAt(encodeSegHeader(first), 0)
	if err == nil {
		err = o.preallocate(f, from)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	o.unwrittenSeg, o.unwrittenFrom = first, from
	return syncDir(o.opts.Dir)
}

// writeSync writes p at off of path, durably.
func writeSync(path string, p []byte, off int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(p, off)
	if err == nil {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// zeroSync overwrites [from, to) of path with zeros, durably.
func zeroSync(path string, from, to int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(make([]byte, to-from), from)
	if err == nil {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// preallocate reserves the rest of a new segment file, from off to
// SegmentBytes, with fallocate: blocks allocated once, here, rather than at
// every commit, so a commit's fdatasync carries only the conversion of the
// written range. (Blocks written with zeros would need no journal at all,
// but cost writing every segment twice; measured in wear_test.go.) A file
// system without fallocate just grows the file as it is written.
func (o *Outbox) preallocate(f *os.File, off int64) error {
	if off >= o.opts.SegmentBytes {
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), 0, off, o.opts.SegmentBytes-off)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return nil
	}
	return err
}

// seal cuts a preallocated active segment to its records before it is
// closed for good, durably, so that a sealed segment's size is its data.
func (o *Outbox) seal() error {
	if err := o.active.Truncate(o.activeSize); err != nil {
		return fmt.Errorf("seal %s: %w", o.active.Name(), err)
	}
	if err := o.active.Sync(); err != nil {
		return fmt.Errorf("seal %s: %w", o.active.Name(), err)
	}
	return nil
}
