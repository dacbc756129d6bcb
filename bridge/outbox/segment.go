package outbox

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
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
// segment without reading the rest of it.
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
	if err := checkSegHeader(b[:], first); err != nil {
		return time.Time{}, err
	}
	if n < len(b) {
		return time.Time{}, nil // empty segment
	}
	body := b[segHeaderSize+recHeaderSize:]
	return time.Unix(0, int64(binary.LittleEndian.Uint64(body[8:]))), nil
}

// scanResult is what a full scan of one segment found.
type scanResult struct {
	count     uint64
	lastSeq   uint64 // seq of the last whole record (0 if none)
	goodSize  int64  // offset just past the last whole record
	fileSize  int64
	firstTime time.Time
	badHeader bool
	reason    error // why the scan stopped before fileSize, if it did
}

// scanSegment reads every record of a segment, checking length, checksum
// and seq (ascending from the segment's first: seqs acknowledged from
// memory never reach disk, so they need not be contiguous), and calls
// visit for each whole record (body valid only during the call). It stops
// at the first bad record.
func scanSegment(path string, first uint64, visit func(body []byte)) (scanResult, error) {
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
	if err := checkSegHeader(hdr, first); err != nil {
		res.badHeader, res.reason = true, err
		return res, nil
	}
	rr := recordReader{r: br, off: segHeaderSize}
	res.goodSize = segHeaderSize
	for {
		body, err := rr.nextBody()
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			if errors.Is(err, errCorrupt) {
				res.reason = err
				return res, nil
			}
			return res, err
		}
		seq := binary.LittleEndian.Uint64(body[0:])
		if seq < first || (res.count > 0 && seq <= res.lastSeq) {
			res.reason = fmt.Errorf("%w: seq %d where one above %d was expected", errCorrupt, seq, max(res.lastSeq, first-1))
			return res, nil
		}
		res.lastSeq = seq
		if res.count == 0 {
			res.firstTime = time.Unix(0, int64(binary.LittleEndian.Uint64(body[8:])))
		}
		if visit != nil {
			visit(body)
		}
		res.count++
		res.goodSize = rr.off
	}
}
