package outbox

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const segSuffix = ".seg"

// segInfo is all the outbox keeps in memory about one segment file.
type segInfo struct {
	first     uint64    // seq of its first record (also its name)
	count     uint64    // records in it
	bytes     int64     // file size, header included
	firstTime time.Time // time of its first record (zero if unknown)
}

func segName(first uint64) string { return fmt.Sprintf("%020d%s", first, segSuffix) }

func (o *Outbox) segPath(first uint64) string { return filepath.Join(o.opts.Dir, segName(first)) }

// listSegments returns the first seqs of the segment files in dir, sorted.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var firsts []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) || e.IsDir() {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil || n == 0 {
			continue // not ours; leave it alone
		}
		firsts = append(firsts, n)
	}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i] < firsts[j] })
	return firsts, nil
}

// readFirstTime reads the header and the first record's time of a sealed
// segment without reading the rest of it (nor checking the record).
func readFirstTime(path string, first uint64) (time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	var b [segHeaderSize + recHeaderSize + bodyFixedSize]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && !(errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) {
		return time.Time{}, err
	}
	if n < segHeaderSize {
		return time.Time{}, errors.New("shorter than its header")
	}
	ver, err := checkSegHeader(b[:], first)
	if err != nil {
		return time.Time{}, err
	}
	rec := b[segHeaderSize:n]
	if ver == segVersion1 {
		if len(rec) < recHeaderSize+bodyFixedSize {
			return time.Time{}, nil // empty segment
		}
		return time.Unix(0, int64(binary.LittleEndian.Uint64(rec[recHeaderSize+8:]))), nil
	}
	_, k := binary.Uvarint(rec)
	if k <= 0 || len(rec) < k+4 {
		return time.Time{}, nil // empty segment
	}
	rec = rec[k+4:]
	if ver == segVersion && len(rec) > 0 {
		rec = rec[1:] // flags; the first record is absolute
	}
	if _, k = binary.Uvarint(rec); k <= 0 {
		return time.Time{}, nil
	}
	ms, k2 := binary.Varint(rec[k:])
	if k2 <= 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(ms + timeEpochMs), nil
}

// guessVersion returns the record version of a segment whose header is
// damaged: the version byte if it is a known one, else the version whose
// record parses at the start.
func guessVersion(f io.ReaderAt, hdr []byte, first uint64, size int64) byte {
	if len(hdr) > 6 && knownVersion(hdr[6]) {
		return hdr[6]
	}
	lim := min(size, segHeaderSize+pageSize)
	if at, _, ok, _ := findRecord(f, segVersion1, segHeaderSize, lim, first, ^uint64(0)); ok && at == segHeaderSize {
		return segVersion1
	}
	// A version-4 body starts with its flags, a version-3 one with the
	// seq: both may parse; the segment's first record carries a seq
	// near the name's.
	at4, seq4, ok4, _ := findRecord(f, segVersion, segHeaderSize, lim, first, ^uint64(0))
	at3, seq3, ok3, _ := findRecord(f, segVersion3, segHeaderSize, lim, first, ^uint64(0))
	ok4, ok3 = ok4 && at4 == segHeaderSize, ok3 && at3 == segHeaderSize
	if ok3 && (!ok4 || seq3-first < seq4-first) {
		return segVersion3
	}
	return segVersion
}

// scanResult is what a full scan of one segment found.
type scanResult struct {
	count     uint64 // whole records
	lastSeq   uint64 // seq of the last whole record (0 if none)
	goodSize  int64  // offset just past the last whole record
	fileSize  int64
	dataEnd   int64 // offset just past the last non-zero byte (at least goodSize)
	firstTime time.Time
	badHeader bool
	version   byte     // record version (from the header, or guessed)
	reason    error    // why the scan stopped before fileSize, if it did
	damaged   []damage // damaged stretches with whole records after them
	stale     bool     // after the last record lie records of lower seqs (a recycled file)
	ctx       pageCtx  // version 4: the context after the last whole record
}

// damage is a stretch of a segment that holds no whole record, followed by
// a whole record: corruption in the middle (a disk fault), not a torn tail.
type damage struct {
	off, bytes int64
	fromSeq    uint64 // the first seq that may have been lost
	nextSeq    uint64 // the seq of the whole record after it
	reason     error
}

// scanSegment reads every record of a segment, checking length, checksum
// and that seqs ascend from the name's first seq, and calls visit for each
// whole record (body valid only during the call). A damaged record (or a
// damaged header) costs only itself: the scan resynchronises on the next
// whole record (see findRecord) and notes the damage. It stops where no
// whole record follows: the end, or a torn or damaged tail.
func scanSegment(path string, first uint64, visit func(recView)) (scanResult, error) {
	var res scanResult
	f, err := os.Open(path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return res, err
	}
	res.fileSize = st.Size()
	br := bufio.NewReaderSize(f, 256<<10)
	hdr := make([]byte, segHeaderSize)
	if _, err := io.ReadFull(br, hdr); err != nil {
		res.badHeader, res.reason = true, errors.New("shorter than its header")
		return res, nil
	}
	ver, err := checkSegHeader(hdr, first)
	if err != nil {
		// The records carry their own checksums and seqs: read them anyway.
		res.badHeader, res.reason = true, err
		ver = guessVersion(f, hdr, first, res.fileSize)
	}
	res.version = ver
	rr := recordReader{r: br, ver: ver, off: segHeaderSize}
	res.goodSize = segHeaderSize
	res.dataEnd = -1
	next := first // the lowest seq the next record may carry
	for {
		_, err := rr.nextBody()
		if err == io.EOF {
			break
		}
		var v recView
		if err == nil {
			v = rr.v
			if v.seq < next {
				err = fmt.Errorf("%w: seq %d where %d or more was expected", errCorrupt, v.seq, next)
			}
		}
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				return res, err
			}
			cause, bad := err, rr.off
			if res.dataEnd < 0 {
				if res.dataEnd, err = lastNonZero(f, res.goodSize, res.fileSize); err != nil {
					return res, err
				}
			}
			at, _, found, err := findRecord(f, ver, bad+1, res.dataEnd, next, ^uint64(0))
			if err != nil {
				return res, err
			}
			if !found {
				res.reason = cause
				// A record of a lower seq after the damage: the old
				// contents of a recycled file, not a torn tail.
				_, _, res.stale, err = findRecord(f, ver, bad, res.dataEnd, 0, first)
				if err != nil {
					return res, err
				}
				break
			}
			br.Reset(io.NewSectionReader(f, at, res.fileSize-at))
			rr = recordReader{r: br, ver: ver, off: at, buf: rr.buf}
			if _, err = rr.nextBody(); err != nil { // findRecord checked it
				return res, err
			}
			v = rr.v
			res.damaged = append(res.damaged, damage{off: bad, bytes: at - bad, fromSeq: next, nextSeq: v.seq, reason: cause})
		}
		if res.count == 0 {
			res.firstTime = v.time
		}
		if visit != nil {
			visit(v)
		}
		res.count++
		res.lastSeq, next = v.seq, v.seq+1
		res.goodSize = rr.off
	}
	if ver == segVersion {
		res.ctx = rr.ctx.clone()
	}
	if res.dataEnd < res.goodSize {
		res.dataEnd = res.goodSize
		if res.goodSize < res.fileSize {
			var err error
			if res.dataEnd, err = lastNonZero(f, res.goodSize, res.fileSize); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// findRecord looks for the first whole record of version ver in
// [from, limit) of f whose seq lies in [minSeq, maxSeq): its length fits,
// its checksum matches and its fields fit its body. It is how a reader
// resynchronises after a damaged record: random bytes pass all three
// checks with a chance of about 2^-32 per offset, so a match is a record
// that was written.
func findRecord(f io.ReaderAt, ver byte, from, limit int64, minSeq, maxSeq uint64) (off int64, seq uint64, found bool, err error) {
	const window = 64 << 10
	const lookahead = recHeaderSize + bodyFixedSize // enough for either header and seq
	buf := make([]byte, window)
	var scratch []byte
	wstart, wlen := int64(0), 0
	for p := from; p < limit; p++ {
		if p < wstart || p+lookahead > wstart+int64(wlen) && wstart+int64(wlen) < limit {
			n, err := f.ReadAt(buf[:min(int64(window), limit-p)], p)
			if n == 0 {
				if err != nil && err != io.EOF {
					return 0, 0, false, err
				}
				return 0, 0, false, nil
			}
			wstart, wlen = p, n
		}
		h := buf[p-wstart : wlen]
		var n uint64
		var sum uint32
		var hl int
		if ver == segVersion1 {
			if len(h) < recHeaderSize+bodyFixedSize {
				continue
			}
			n, sum, hl = uint64(binary.LittleEndian.Uint32(h)), binary.LittleEndian.Uint32(h[4:]), recHeaderSize
			if n < bodyFixedSize {
				continue
			}
			seq = binary.LittleEndian.Uint64(h[hl:])
		} else {
			x, k := binary.Uvarint(h[:min(len(h), binary.MaxVarintLen32)])
			if k <= 0 || len(h) < k+4+1 || x < minBodyV2 {
				continue
			}
			n, sum, hl = x, binary.LittleEndian.Uint32(h[k:]), k+4
			at := hl
			if ver == segVersion {
				// Only an absolute record can be read without the
				// records before it.
				if h[hl]&v4Delta != 0 {
					continue
				}
				at++
			}
			s, k2 := binary.Uvarint(h[min(len(h), at):min(len(h), at+binary.MaxVarintLen64)])
			if k2 <= 0 {
				continue
			}
			seq = s
		}
		if n > maxRecordBody || p+int64(hl)+int64(n) > limit || seq < minSeq || seq >= maxSeq {
			continue
		}
		var body []byte
		if hl+int(n) <= len(h) {
			body = h[hl : hl+int(n)]
		} else {
			if uint64(cap(scratch)) < n {
				scratch = make([]byte, n)
			}
			body = scratch[:n]
			if _, err := f.ReadAt(body, p+int64(hl)); err != nil {
				return 0, 0, false, err
			}
		}
		if crc32.Checksum(body, castagnoli) != sum {
			continue
		}
		if _, err := parseBody(ver, body); err != nil {
			continue
		}
		return p, seq, true, nil
	}
	return 0, 0, false, nil
}

// lastNonZero returns the offset just past the last non-zero byte of f in
// [from, to), or from if they are all zero: the end of data in a
// preallocated segment, whose unused rest reads as zeros.
func lastNonZero(f *os.File, from, to int64) (int64, error) {
	buf := make([]byte, 64<<10)
	end := from
	for off := from; off < to; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), to-off)], off)
		if i := lastNonZeroIn(buf[:n]); i >= 0 {
			end = off + int64(i) + 1
		}
		off += int64(n)
		if err == io.EOF || n == 0 {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	return end, nil
}

// allZero reports whether b holds only zeros. It compares with zeroPage a
// page at a time (bytes.Equal checks many bytes per instruction), where a
// byte loop over the zero-filled segments a new outbox prefills cost
// about 250 M instructions at every start.
func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), pageSize)
		if !bytes.Equal(b[:n], zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// lastNonZeroIn is the index of b's last non-zero byte, or -1.
func lastNonZeroIn(b []byte) int {
	for hi := len(b); hi > 0; {
		lo := max(0, hi-pageSize)
		if !allZero(b[lo:hi]) {
			for i := hi - 1; i >= lo; i-- {
				if b[i] != 0 {
					return i
				}
			}
		}
		hi = lo
	}
	return -1
}

// syncData is fdatasync for the active segment; tests replace it to make a
// sync fail.
var syncData = fdatasync

// fdatasync flushes f's data and the metadata needed to read it back (its
// size, its block map), but not its timestamps.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}
