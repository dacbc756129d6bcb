package gateway

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// seqStore keeps each device's reading sequence number across restarts.
//
// Each device has a small fixed-size file under data_dir/seq holding a seq,
// the kernel boot ID and a flag. While the gateway runs, the seq in the
// file is a reservation: numbers are handed out in blocks of seqBlock, and
// the end of a block is written and fdatasync'd before its first number is
// used, so the file is written once per seqBlock readings, not once per
// reading (a dirty page per reading is flash wear while the uplink keeps up
// and nothing else is written). The file and its name are made durable at
// start. At a clean stop the exact last seq is written with the clean flag.
// After kill -9 or a power cut (no clean flag) numbering goes on after the
// reserved block: a gap of at most seqBlock-1 numbers, and never a number
// used twice, whatever the file system kept of unsynced writes. Readings
// that were only in memory are lost in such a crash; the gap in seq is
// where a consumer sees it (README: "What a crash can lose").
type seqStore struct {
	lock   *dataLock // data_dir/LOCK, held until close (datalock.go)
	dir    string
	bootID string
	mu     sync.Mutex
	files  map[string]*seqFile
}

// seqFile is one device's file. Its own lock covers the block writes and
// their fdatasync, so one device's sync never delays another's reading;
// seqStore.mu guards only the map.
type seqFile struct {
	mu       sync.Mutex
	f        *os.File
	seq      uint64 // last number handed out
	reserved uint64 // numbers up to this are durably reserved
	buf      []byte
}

const (
	// seqBlock is how many numbers one durable write reserves: one small
	// fdatasync'd write per 1,000 readings (50 s at 20 readings/s) instead
	// of a dirty page per reading, and the gap after a crash stays within
	// powerLossSkip.
	seqBlock = powerLossSkip
	// powerLossSkip is added after a power cut to a file holding a
	// per-reading number (flag '0': edgegw 0.1 wrote one per reading
	// without fsync, so its last numbers may not have reached the disk).
	// A reservation (flag 'r') needs no skip: it was synced before use.
	powerLossSkip = 1000
)

// line: 20-digit seq, space, 36-char boot id, space, flag, newline. The flag
// is '1' after a clean stop, 'r' for a durable reservation, '0' for a
// per-reading number (edgegw 0.1).
const seqLineLen = 20 + 1 + 36 + 1 + 1 + 1

// openSeqStore locks data_dir first: in every mode, with or without an
// upstream, it is the first thing that uses it.
func openSeqStore(dataDir string) (*seqStore, error) {
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(dataDir, "seq")
	if _, err := os.Stat(dir); err != nil {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			lock.release()
			return nil, fmt.Errorf("sequence numbers: %w", err)
		}
		if err := syncDir(dataDir); err != nil {
			lock.release()
			return nil, fmt.Errorf("sequence numbers: %w", err)
		}
	}
	return &seqStore{lock: lock, dir: dir, bootID: bootID(), files: map[string]*seqFile{}}, nil
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	id := strings.TrimSpace(string(b))
	if err != nil || len(id) != 36 {
		return strings.Repeat("0", 36)
	}
	return id
}

// open loads a device's sequence number: the next reading gets last+1.
// skipped reports that the gateway did not stop cleanly (kill -9, crash,
// power cut): numbering resumes after the reserved block, a gap.
func (s *seqStore) open(device string) (last uint64, skipped bool, err error) {
	path := filepath.Join(s.dir, device)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return 0, false, fmt.Errorf("sequence numbers of %s: %w", device, err)
	}
	b := make([]byte, seqLineLen)
	n, _ := f.ReadAt(b, 0)
	if n == seqLineLen {
		fields := strings.Fields(string(b))
		if len(fields) == 3 {
			last, _ = strconv.ParseUint(fields[0], 10, 64)
			switch {
			case fields[2] == "1":
			case fields[2] == "0" && fields[1] != s.bootID:
				last += powerLossSkip
				skipped = true
			default:
				skipped = true
			}
		}
	}
	sf := &seqFile{f: f, seq: last, reserved: last, buf: b}
	sf.mu.Lock() // until the starting point is durable
	defer sf.mu.Unlock()
	s.mu.Lock()
	prev := s.files[device]
	s.files[device] = sf
	s.mu.Unlock()
	if prev != nil {
		prev.f.Close()
	}
	// The starting point is made durable with the file's name, so that a
	// power cut in this run still finds at least this value (and no clean
	// flag).
	if err := sf.write(last, s.bootID, 'r'); err != nil {
		return 0, false, fmt.Errorf("sequence numbers of %s: %w", device, err)
	}
	if err := f.Sync(); err != nil {
		return 0, false, fmt.Errorf("sequence numbers of %s: %w", device, err)
	}
	if err := syncDir(s.dir); err != nil {
		return 0, false, fmt.Errorf("sequence numbers of %s: %w", device, err)
	}
	return last, skipped, nil
}

// next returns the device's next sequence number. Only the first number of
// each block costs a write (and an fdatasync).
func (s *seqStore) next(device string) (uint64, error) {
	s.mu.Lock()
	sf := s.files[device]
	s.mu.Unlock()
	if sf == nil {
		return 0, fmt.Errorf("sequence numbers of %s: not open (the store is closed)", device)
	}
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if sf.seq+1 > sf.reserved {
		if err := sf.write(sf.seq+seqBlock, s.bootID, 'r'); err != nil {
			return 0, fmt.Errorf("sequence numbers of %s: %w", device, err)
		}
		// The size does not change: fdatasync skips the inode's times.
		if err := syscall.Fdatasync(int(sf.f.Fd())); err != nil {
			return 0, fmt.Errorf("sequence numbers of %s: fdatasync: %w", device, err)
		}
		sf.reserved = sf.seq + seqBlock
	}
	sf.seq++
	return sf.seq, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func (sf *seqFile) write(seq uint64, boot string, flag byte) error {
	b := sf.buf[:0]
	b = fmt.Appendf(b, "%020d %s %c\n", seq, boot, flag)
	if len(b) != seqLineLen {
		b = bytes.Repeat([]byte{' '}, seqLineLen) // cannot happen; keep the size fixed
	}
	_, err := sf.f.WriteAt(b, 0)
	return err
}

// close records every device's exact last number as cleanly stopped and
// fsyncs it.
func (s *seqStore) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for _, sf := range s.files {
		sf.mu.Lock()
		if err := sf.write(sf.seq, s.bootID, '1'); err != nil && first == nil {
			first = err
		}
		if err := sf.f.Sync(); err != nil && first == nil {
			first = err
		}
		sf.f.Close()
		sf.mu.Unlock()
	}
	s.files = map[string]*seqFile{}
	s.lock.release()
	return first
}
