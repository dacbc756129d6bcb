package deadletter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"
)

// FileName is the store's file inside Dir.
const FileName = "deadletter.log"

// DefaultMaxBytes bounds the store when Options.MaxBytes is 0.
const DefaultMaxBytes = 16 << 20

// ErrFull is returned by Add when the entry does not fit in MaxBytes.
var ErrFull = errors.New("deadletter: store full")

// Entry is one message the upstream broker refused for good.
type Entry struct {
	ID     uint64    // rises by one per entry, never reused within a file
	Time   time.Time // when it was refused
	Code   byte      // MQTT 5 reason code; 0x95 also when too large to send
	Cause  string    // what was wrong, in words
	Topic  string    // the remote topic it was sent (or to be sent) on
	QoS    byte
	Retain bool
	// Payload is the message body.
	Payload []byte
}

// How says why an entry left the store.
type How byte

// Ways an entry leaves the store.
const (
	Replayed How = 1
	Dropped  How = 2
)

const (
	kindEntry   = 1
	kindRemoval = 2
	recHeader   = 8
	entryFixed  = 1 + 8 + 8 + 1 + 1 + 1 + 2 + 2 // kind id time code qos retain causeLen topicLen
	maxRecord   = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Stats is a snapshot of the store for metrics and status.
type Stats struct {
	Entries int    // messages held now
	Bytes   int64  // size of the file
	Added   uint64 // entries added since Open
	Full    uint64 // entries refused with ErrFull since Open
	// ByCode counts the entries held now per reason code ("0x87").
	ByCode map[string]int
}

// Store is an open dead-letter store. Its methods are safe for concurrent use.
type Store struct {
	dir      string
	maxBytes int64

	mu      sync.Mutex
	f       *os.File
	size    int64
	nextID  uint64
	live    map[uint64]Entry // held in memory: the store is small by design
	added   uint64
	full    uint64
	closed  bool
	damaged string // file kept aside at Open, "" if none
}

// Options configure Open.
type Options struct {
	Dir      string
	MaxBytes int64 // 0 = DefaultMaxBytes
}

// Open opens or creates the store in o.Dir.
func Open(o Options) (*Store, error) {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, requestDir), 0o700); err != nil {
		return nil, fmt.Errorf("deadletter: %w", err)
	}
	_ = os.Chmod(o.Dir, 0o700)
	path := filepath.Join(o.Dir, FileName)
	entries, nextID, damaged, err := readFile(path)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: o.Dir, maxBytes: o.MaxBytes, nextID: nextID, live: map[uint64]Entry{}}
	for _, e := range entries {
		s.live[e.ID] = e
	}
	if damaged {
		// Keep what could not be read for the operator; go on with the rest.
		s.damaged = path + ".damaged-" + strconv.FormatInt(time.Now().Unix(), 10)
		if err := copyFile(path, s.damaged); err != nil {
			return nil, fmt.Errorf("deadletter: keeping the damaged file: %w", err)
		}
	}
	if err := s.rewrite(); err != nil {
		return nil, err
	}
	return s, nil
}

// Damaged is the copy of a damaged file Open kept aside, or "".
func (s *Store) Damaged() string { return s.damaged }

// rewrite writes the live entries to a fresh file and switches to it.
func (s *Store) rewrite() error {
	path := filepath.Join(s.dir, FileName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("deadletter: %w", err)
	}
	var buf []byte
	for _, id := range s.sortedIDs() {
		buf = appendEntry(buf, s.live[id])
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("deadletter: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		return fmt.Errorf("deadletter: %w", err)
	}
	syncDir(s.dir)
	if s.f != nil {
		s.f.Close()
	}
	s.f, s.size = f, int64(len(buf))
	return nil
}

func (s *Store) sortedIDs() []uint64 {
	ids := make([]uint64, 0, len(s.live))
	for id := range s.live {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Add stores e durably (e.ID is assigned) and returns its id.
func (s *Store) Add(e Entry) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("deadletter: store closed")
	}
	e.ID = s.nextID
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	rec := appendEntry(nil, e)
	if s.size+int64(len(rec)) > s.maxBytes {
		// Removal records take room too: compact before giving up.
		if err := s.rewrite(); err != nil {
			return 0, err
		}
		if s.size+int64(len(rec)) > s.maxBytes {
			s.full++
			return 0, fmt.Errorf("%w (%d of %d bytes used; list and drop entries with 'edgegw deadletter')", ErrFull, s.size, s.maxBytes)
		}
	}
	if err := s.append(rec); err != nil {
		return 0, err
	}
	s.nextID++
	s.live[e.ID] = e
	s.added++
	return e.ID, nil
}

func (s *Store) append(rec []byte) error {
	if _, err := s.f.WriteAt(rec, s.size); err != nil {
		return fmt.Errorf("deadletter: write: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("deadletter: fsync: %w", err)
	}
	s.size += int64(len(rec))
	return nil
}

// Remove records that entry id left the store (replayed or dropped).
func (s *Store) Remove(id uint64, how How) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.live[id]; !ok {
		return fmt.Errorf("deadletter: no entry %d", id)
	}
	var b [recHeader + 10]byte
	body := b[recHeader:]
	body[0] = kindRemoval
	binary.LittleEndian.PutUint64(body[1:], id)
	body[9] = byte(how)
	binary.LittleEndian.PutUint32(b[0:], uint32(len(body)))
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(body, castagnoli))
	if err := s.append(b[:]); err != nil {
		return err
	}
	delete(s.live, id)
	if len(s.live) == 0 {
		// Nothing held: start the file afresh rather than keep removals.
		return s.rewrite()
	}
	return nil
}

// List returns the entries held, oldest first.
func (s *Store) List() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Entry, 0, len(s.live))
	for _, id := range s.sortedIDs() {
		out = append(out, s.live[id])
	}
	return out
}

// Stats returns a snapshot.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Entries: len(s.live), Bytes: s.size, Added: s.added, Full: s.full, ByCode: map[string]int{}}
	for _, e := range s.live {
		st.ByCode[fmt.Sprintf("0x%02x", e.Code)]++
	}
	return st
}

// Close closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.f.Close()
}

// ReadDir reads the entries held in dir without opening the store for
// writing (the gateway may hold it): `edgegw deadletter list`.
func ReadDir(dir string) ([]Entry, error) {
	entries, _, _, err := readFile(filepath.Join(dir, FileName))
	return entries, err
}

func appendEntry(dst []byte, e Entry) []byte {
	cause := e.Cause
	if len(cause) > 1024 {
		cause = cause[:1024]
	}
	n := entryFixed + len(cause) + len(e.Topic) + len(e.Payload)
	start := len(dst)
	dst = append(dst, make([]byte, recHeader+n)...)
	b := dst[start+recHeader:]
	b[0] = kindEntry
	binary.LittleEndian.PutUint64(b[1:], e.ID)
	binary.LittleEndian.PutUint64(b[9:], uint64(e.Time.UnixNano()))
	b[17] = e.Code
	b[18] = e.QoS
	if e.Retain {
		b[19] = 1
	}
	binary.LittleEndian.PutUint16(b[20:], uint16(len(cause)))
	binary.LittleEndian.PutUint16(b[22:], uint16(len(e.Topic)))
	p := b[entryFixed:]
	p = p[copy(p, cause):]
	p = p[copy(p, e.Topic):]
	copy(p, e.Payload)
	binary.LittleEndian.PutUint32(dst[start:], uint32(n))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(b, castagnoli))
	return dst
}

// readFile reads every record up to the first one it cannot read. damaged
// reports a record that fails its checksum or decoding (a disk fault),
// as opposed to a torn tail (a record cut short by a crash before its
// fsync, which nobody was told was stored); a missing file is empty.
func readFile(path string) (entries []Entry, nextID uint64, damaged bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 1, false, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("deadletter: %w", err)
	}
	total := int64(len(data))
	nextID = 1
	live := map[uint64]Entry{}
	off := int64(0)
	for off+recHeader <= total {
		n := int64(binary.LittleEndian.Uint32(data[off:]))
		if n < 1 || n > maxRecord {
			damaged = true
			break
		}
		if off+recHeader+n > total {
			break // torn tail
		}
		body := data[off+recHeader : off+recHeader+n]
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(data[off+4:]) {
			// The body is damaged but its length may be right: skip it
			// and go on with the next record (the copy kept aside still
			// holds this one).
			damaged = true
			off += recHeader + n
			continue
		}
		switch body[0] {
		case kindEntry:
			e, derr := decodeEntry(body)
			if derr != nil {
				return entriesOf(live), nextID, true, nil
			}
			live[e.ID] = e
			nextID = max(nextID, e.ID+1)
		case kindRemoval:
			if len(body) >= 10 {
				delete(live, binary.LittleEndian.Uint64(body[1:]))
			}
		}
		off += recHeader + n
	}
	return entriesOf(live), nextID, damaged, nil
}

func entriesOf(live map[uint64]Entry) []Entry {
	out := make([]Entry, 0, len(live))
	for _, e := range live {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func decodeEntry(b []byte) (Entry, error) {
	if len(b) < entryFixed {
		return Entry{}, io.ErrUnexpectedEOF
	}
	cl := int(binary.LittleEndian.Uint16(b[20:]))
	tl := int(binary.LittleEndian.Uint16(b[22:]))
	if entryFixed+cl+tl > len(b) {
		return Entry{}, io.ErrUnexpectedEOF
	}
	p := b[entryFixed:]
	return Entry{
		ID:      binary.LittleEndian.Uint64(b[1:]),
		Time:    time.Unix(0, int64(binary.LittleEndian.Uint64(b[9:]))),
		Code:    b[17],
		QoS:     b[18],
		Retain:  b[19]&1 != 0,
		Cause:   string(p[:cl]),
		Topic:   string(p[cl : cl+tl]),
		Payload: append([]byte(nil), p[cl+tl:]...),
	}, nil
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
