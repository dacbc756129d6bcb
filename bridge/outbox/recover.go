package outbox

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
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
	if len(firsts) == 0 {
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
	visit := func(body []byte) {
		if body[16] != 2 {
			return
		}
		tl := int(binary.LittleEndian.Uint16(body[20:]))
		ol := int(binary.LittleEndian.Uint16(body[22:]))
		if ol == 0 {
			return
		}
		o.recent.add(makeOriginKey(string(body[bodyFixedSize+tl:bodyFixedSize+tl+ol]), binary.LittleEndian.Uint16(body[18:])), binary.LittleEndian.Uint64(body[0:]))
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
		o.log.Warn("outbox: cut torn or corrupt tail of the last segment", "file", path, "offset", res.goodSize, "bytes", res.fileSize-res.goodSize, "records_kept", res.count, "reason", res.reason)
		o.st.tailCut += uint64(res.fileSize - res.goodSize)
		if err := truncateSync(path, res.goodSize); err != nil {
			return fmt.Errorf("cut tail of %s: %w", path, err)
		}
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
	for s := range st.released {
		if s >= o.floor && s < o.nextSeq && !o.acked.has(s) {
			o.released[s] = struct{}{}
		}
	}
	o.writtenNext, o.durableNext = o.nextSeq, o.nextSeq
	o.cursor = o.floor

	// Open the active segment and the ack log for appending.
	a := o.segs[len(o.segs)-1]
	f, err := os.OpenFile(o.segPath(a.first), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	o.active, o.activeFirst, o.activeCount, o.activeSize = f, a.first, a.count, a.bytes
	o.activeNext = o.nextSeq
	o.writtenOff = a.bytes
	if o.stateF, o.stateSize, err = openStateLog(dir, good); err != nil {
		return fmt.Errorf("open ack log: %w", err)
	}
	return nil
}

// createSegment creates an empty segment file with its header, durably.
func (o *Outbox) createSegment(first uint64) error {
	path := o.segPath(first)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(encodeSegHeader(first))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return syncDir(o.opts.Dir)
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
