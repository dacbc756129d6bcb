package outbox

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// FsyncMode says when appended messages are forced to stable storage.
type FsyncMode int

const (
	// FsyncBatch (the default) is group commit: the committer writes every
	// message queued since its last pass and calls fsync once for the batch;
	// callbacks complete after that fsync.
	FsyncBatch FsyncMode = iota
	// FsyncAlways writes and fsyncs each message on its own (still inside one
	// committer pass, whose callbacks complete together). Safest, slowest and
	// hardest on flash.
	FsyncAlways
	// FsyncInterval writes each batch and fsyncs every Options.FsyncInterval.
	// Callbacks complete after the write, BEFORE the fsync: a message reported
	// stored survives kill -9 of the process but may be lost on power loss.
	// This is weaker than the other modes; MarkReleased stays fsync'd.
	FsyncInterval
)

// String returns the configuration spelling of m.
func (m FsyncMode) String() string {
	switch m {
	case FsyncAlways:
		return "always"
	case FsyncBatch:
		return "batch"
	case FsyncInterval:
		return "interval"
	}
	return fmt.Sprintf("FsyncMode(%d)", int(m))
}

// ParseFsyncMode parses "always", "batch" or "interval".
func ParseFsyncMode(s string) (FsyncMode, error) {
	switch s {
	case "always":
		return FsyncAlways, nil
	case "batch", "":
		return FsyncBatch, nil
	case "interval":
		return FsyncInterval, nil
	}
	return 0, fmt.Errorf("outbox: fsync mode %q: want \"always\", \"batch\" or \"interval\"", s)
}

// FullPolicy says what happens when the log holds Options.MaxBytes.
type FullPolicy int

const (
	// DropOldest deletes the oldest segment (whole segments, see
	// Options.SegmentBytes) to make room; the dropped messages are counted.
	DropOldest FullPolicy = iota
	// DropNewest refuses new messages with ErrFull.
	DropNewest
	// Block makes AppendAsync wait until space frees or its context ends.
	Block
)

// String returns the configuration spelling of p.
func (p FullPolicy) String() string {
	switch p {
	case DropOldest:
		return "drop_oldest"
	case DropNewest:
		return "drop_newest"
	case Block:
		return "block"
	}
	return fmt.Sprintf("FullPolicy(%d)", int(p))
}

// ParseFullPolicy parses "drop_oldest", "drop_newest" or "block".
func ParseFullPolicy(s string) (FullPolicy, error) {
	switch s {
	case "drop_oldest", "":
		return DropOldest, nil
	case "drop_newest":
		return DropNewest, nil
	case "block":
		return Block, nil
	}
	return 0, fmt.Errorf("outbox: full policy %q: want \"drop_oldest\", \"drop_newest\" or \"block\"", s)
}

// Options configures Open.
type Options struct {
	// Dir holds the segment files and the ack log; it is created if missing.
	Dir string
	// SegmentBytes is the size at which a segment is closed and a new one
	// started (default 8 MiB). When MaxBytes is set, it is lowered to
	// MaxBytes/8 (at least 4 KiB) so that DropOldest, which deletes whole
	// segments, drops at most about an eighth of the buffer at a time.
	SegmentBytes int64
	// MaxBytes bounds the segment bytes on disk; 0 means unlimited.
	MaxBytes int64
	// MaxAge drops messages older than this when Next reaches them; 0 = none.
	MaxAge time.Duration
	// Full is the policy applied when MaxBytes is reached.
	Full FullPolicy
	// Fsync is the durability mode (default FsyncBatch).
	Fsync FsyncMode
	// FsyncInterval is the period of FsyncInterval mode (default 1s).
	FsyncInterval time.Duration
	// Durability is where a QoS 1 message must be before it counts as
	// stored: DurabilityMemory (default: safe upstream or on disk) or
	// DurabilityDisk (on disk, always).
	Durability Durability
	// SpillAfter is how long a message may wait in memory for its upstream
	// acknowledgement before it is written (default 1s). It bounds, with
	// the commit latency, what a power cut can lose of messages that have
	// no local publisher to resend them (the gateway's own readings).
	SpillAfter time.Duration
	// MemoryBytes bounds the memory window in record bytes (default 1 MiB);
	// the oldest entries are spilled to make room.
	MemoryBytes int64
	// CommitInterval bounds how often the committer commits (writes and
	// syncs) appended messages while nobody waits in Next (the link is down
	// or behind): at most once per CommitInterval, sooner only when 32 KiB
	// are queued (in a fresh, fallocated segment: when the queue stops
	// growing past 32 KiB, or at 256 KiB; see the package doc), when Next
	// waits for data, or at Close. A message
	// waits at most this long (plus the write) before it is durable; in
	// exchange each commit writes whole pages instead of one partial page
	// per message. 0 (the default here) commits as soon as the committer is
	// free, as before; the gateway's default is [buffer] commit_interval.
	CommitInterval time.Duration
	// Logger receives recovery, drop-episode and I/O messages (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

const (
	defaultSegmentBytes = 8 << 20
	minSegmentBytes     = 4 << 10
	// maxPendingBytes bounds the encoded bytes queued for the committer;
	// AppendAsync waits beyond it, so memory stays bounded when the disk
	// is slower than the publishers.
	maxPendingBytes = 1 << 20
	// maxRecordBody bounds one record; a longer length field is corruption.
	maxRecordBody = 64 << 20
	// recentWindow is how many QoS 2 origins RecentOrigin remembers (about
	// 1 MiB). A local publisher resends after a gateway crash only the QoS 2
	// messages it has in flight, far fewer than this.
	recentWindow = 1 << 14
	// recentScanBytes bounds how much of the log tail Open reads to rebuild
	// the RecentOrigin window.
	recentScanBytes = 16 << 20
	// maxOutOfOrderAcks bounds the acks kept above the first unacked seq.
	maxOutOfOrderAcks = 1 << 16
	// ackInterval is the longest an ack waits to be written to the ack log
	// when no appends are flowing.
	ackInterval = 100 * time.Millisecond
	// ackSyncInterval is how often, at most, the ack log is synced while
	// acknowledgements change.
	ackSyncInterval = time.Second
	// stateCompactBytes is the ack log size that triggers a compaction.
	stateCompactBytes = 256 << 10
)

func (o *Options) withDefaults() (Options, error) {
	c := *o
	if c.Dir == "" {
		return c, errors.New("outbox: options: Dir is empty")
	}
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = defaultSegmentBytes
	}
	if c.MaxBytes < 0 || c.MaxAge < 0 || c.FsyncInterval < 0 || c.CommitInterval < 0 {
		return c, errors.New("outbox: options: MaxBytes, MaxAge, FsyncInterval and CommitInterval must not be negative")
	}
	if c.MaxBytes > 0 && c.SegmentBytes > c.MaxBytes/8 {
		c.SegmentBytes = c.MaxBytes / 8
	}
	if c.SegmentBytes < minSegmentBytes {
		c.SegmentBytes = minSegmentBytes
	}
	if c.MaxBytes > 0 && c.MaxBytes < 2*c.SegmentBytes {
		return c, fmt.Errorf("outbox: options: MaxBytes %d is too small (minimum %d)", c.MaxBytes, 2*minSegmentBytes)
	}
	switch c.Full {
	case DropOldest, DropNewest, Block:
	default:
		return c, fmt.Errorf("outbox: options: unknown full policy %d", int(c.Full))
	}
	switch c.Fsync {
	case FsyncAlways, FsyncBatch, FsyncInterval:
	default:
		return c, fmt.Errorf("outbox: options: unknown fsync mode %d", int(c.Fsync))
	}
	if c.FsyncInterval == 0 {
		c.FsyncInterval = time.Second
	}
	switch c.Durability {
	case DurabilityMemory, DurabilityDisk:
	default:
		return c, fmt.Errorf("outbox: options: unknown durability %d", int(c.Durability))
	}
	if c.SpillAfter < 0 || c.MemoryBytes < 0 {
		return c, errors.New("outbox: options: SpillAfter and MemoryBytes must not be negative")
	}
	if c.SpillAfter == 0 {
		c.SpillAfter = defaultSpillAfter
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = defaultMemoryBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// ErrFull is reported for a message refused because the outbox is full
// (DropNewest), or returned by AppendAsync under Block when the context ends.
var ErrFull = errors.New("outbox: full")

// ErrClosed is returned by calls on a closed Outbox.
var ErrClosed = errors.New("outbox: closed")
