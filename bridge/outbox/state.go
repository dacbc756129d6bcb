package outbox

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// The ack log ("acks.log") is the durable record of what upstream
// acknowledged and which QoS 2 messages were released (PUBREC received).
// It is append-only; when it grows past stateCompactBytes the committer
// writes a snapshot to "acks.tmp", fsyncs it and renames it over the log.
//
//	header : magic "EGWACK" (6) | version (1) | reserved (9)
//	record : CRC32C of the 17 bytes after it (4) | kind (1) | a (8) | b (8)
const (
	stateName       = "acks.log"
	stateTmpName    = "acks.tmp"
	stateMagic      = "EGWACK"
	stateHeaderSize = 16
	stateRecSize    = 21

	stFloor   = 1 // every seq < a is acknowledged
	stAcks    = 2 // seqs [a, b) are acknowledged
	stRelease = 3 // seq a had its PUBREC
)

// ackState is the decoded ack log.
type ackState struct {
	floor    uint64
	acked    seqSet
	released map[uint64]struct{}
}

func stateHeader() []byte {
	b := make([]byte, stateHeaderSize)
	copy(b, stateMagic)
	b[6] = 1
	return b
}

func appendStateRec(dst []byte, kind byte, a, b uint64) []byte {
	var r [stateRecSize]byte
	r[4] = kind
	binary.LittleEndian.PutUint64(r[5:], a)
	binary.LittleEndian.PutUint64(r[13:], b)
	binary.LittleEndian.PutUint32(r[0:], crc32.Checksum(r[4:], castagnoli))
	return append(dst, r[:]...)
}

// loadState reads the ack log. A torn tail is reported as cut > 0 with the
// offset of the last whole record; the caller truncates and logs it.
func loadState(path string) (st ackState, good int64, cut int64, err error) {
	st.released = map[uint64]struct{}{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, 0, 0, nil
	}
	if err != nil {
		return st, 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return st, 0, 0, err
	}
	br := bufio.NewReader(f)
	hdr := make([]byte, stateHeaderSize)
	if _, err := io.ReadFull(br, hdr); err != nil || string(hdr[:6]) != stateMagic || hdr[6] != 1 {
		// Unreadable header: start from nothing (a lost ack only causes a resend).
		return st, 0, fi.Size(), nil
	}
	good = stateHeaderSize
	var r [stateRecSize]byte
	for {
		if _, err := io.ReadFull(br, r[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return st, good, fi.Size() - good, nil
			}
			return st, good, 0, err
		}
		if binary.LittleEndian.Uint32(r[0:]) != crc32.Checksum(r[4:], castagnoli) {
			return st, good, fi.Size() - good, nil
		}
		a, b := binary.LittleEndian.Uint64(r[5:]), binary.LittleEndian.Uint64(r[13:])
		switch r[4] {
		case stFloor:
			st.floor = max(st.floor, a)
		case stAcks:
			if b > a && b-a <= 1<<40 {
				st.acked.add(a, b)
			}
		case stRelease:
			st.released[a] = struct{}{}
		default:
			return st, good, fi.Size() - good, nil
		}
		good += stateRecSize
	}
}

// openStateLog opens the ack log for appending, truncating a torn tail at
// good, or creating it with a header.
func openStateLog(dir string, good int64) (*os.File, int64, error) {
	path := filepath.Join(dir, stateName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, filePerm)
	if err != nil {
		return nil, 0, err
	}
	if good < stateHeaderSize {
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, 0, err
		}
		if _, err := f.WriteAt(stateHeader(), 0); err != nil {
			f.Close()
			return nil, 0, err
		}
		// A new log is made durable with its name at once: release marks
		// are fsync'd into it, and an fsync of a file does not make its
		// directory entry durable.
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, 0, err
		}
		if err := syncDir(dir); err != nil {
			f.Close()
			return nil, 0, err
		}
		good = stateHeaderSize
	} else if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, 0, err
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, good, nil
}

// writeStateSnapshot writes the whole state to acks.tmp, fsyncs it, renames
// it over acks.log and fsyncs the directory. It returns the new log opened
// for appending and its size.
func writeStateSnapshot(dir string, floor uint64, acked []span, released []uint64) (*os.File, int64, error) {
	buf := stateHeader()
	buf = appendStateRec(buf, stFloor, floor, 0)
	for _, sp := range acked {
		buf = appendStateRec(buf, stAcks, sp.lo, sp.hi)
	}
	for _, s := range released {
		buf = appendStateRec(buf, stRelease, s, 0)
	}
	tmp := filepath.Join(dir, stateTmpName)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, filePerm)
	if err != nil {
		return nil, 0, err
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		return nil, 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, 0, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateName)); err != nil {
		f.Close()
		return nil, 0, err
	}
	if err := syncDir(dir); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, int64(len(buf)), nil
}

// mkdirAllSync creates dir and its missing parents like os.MkdirAll, and
// fsyncs the parent of each directory it creates: without that a power cut
// can take a new directory, and the log in it, away after Open returned.
func mkdirAllSync(dir string) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAllSync(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return syncDir(parent)
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
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}
