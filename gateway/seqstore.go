package gateway

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// seqStore keeps each device's reading sequence number across restarts.
//
// Each device has a small fixed-size file under data_dir/seq holding the last
// seq, the kernel boot ID and a clean-stop flag. It is overwritten in place
// (one pwrite) on every reading: after kill -9 the page cache still has the
// last value, so numbering goes on without a gap and without a repeat. Only
// a power loss can lose the last writes; we see that as a different boot ID
// without the clean flag, and then skip ahead by powerLossSkip so a number is
// never used twice. That gap is logged as what it is. For the skip to be
// enough whatever the file system keeps of unsynced writes, the file (and
// its name) is fsync'd at start and every syncEvery readings: what survives
// a power cut is then never more than syncEvery behind, one fsync per 500
// readings instead of one per reading.
type seqStore struct {
	lock   *dataLock // data_dir/LOCK, held until close (datalock.go)
	dir    string
	bootID string
	mu     sync.Mutex
	files  map[string]*seqFile
}

type seqFile struct {
	f   *os.File
	seq uint64
	buf []byte
}

const (
	powerLossSkip = 1000
	syncEvery     = powerLossSkip / 2
)

// line: 20-digit seq, space, 36-char boot id, space, clean flag, newline.
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

// open loads a device's sequence number. skipped reports a power-loss skip.
func (s *seqStore) open(device string) (last uint64, skipped bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
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
			if fields[1] != s.bootID && fields[2] != "1" {
				last += powerLossSkip
				skipped = true
			}
		}
	}
	sf := &seqFile{f: f, seq: last, buf: b}
	s.files[device] = sf
	if err := sf.write(s.bootID, false); err != nil {
		return 0, false, err
	}
	// The starting point is made durable with the file's name, so that a
	// power cut in this run still finds at least this value.
	if err := f.Sync(); err != nil {
		return 0, false, fmt.Errorf("sequence numbers of %s: %w", device, err)
	}
	if err := syncDir(s.dir); err != nil {
		return 0, false, fmt.Errorf("sequence numbers of %s: %w", device, err)
	}
	return last, skipped, nil
}

// next returns the device's next sequence number and records it.
func (s *seqStore) next(device string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sf := s.files[device]
	sf.seq++
	if err := sf.write(s.bootID, false); err != nil {
		return sf.seq, err
	}
	if sf.seq%syncEvery == 0 {
		return sf.seq, sf.f.Sync()
	}
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

func (sf *seqFile) write(boot string, clean bool) error {
	flag := byte('0')
	if clean {
		flag = '1'
	}
	b := sf.buf[:0]
	b = fmt.Appendf(b, "%020d %s %c\n", sf.seq, boot, flag)
	if len(b) != seqLineLen {
		b = bytes.Repeat([]byte{' '}, seqLineLen) // cannot happen; keep the size fixed
	}
	_, err := sf.f.WriteAt(b, 0)
	return err
}

// close marks every file as cleanly stopped and fsyncs it.
func (s *seqStore) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for _, sf := range s.files {
		if err := sf.write(s.bootID, true); err != nil && first == nil {
			first = err
		}
		if err := sf.f.Sync(); err != nil && first == nil {
			first = err
		}
		sf.f.Close()
	}
	s.files = map[string]*seqFile{}
	s.lock.release()
	return first
}
