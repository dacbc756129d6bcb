package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Message is one stored MQTT publication.
type Message struct {
	// Seq is assigned by AppendAsync: 1, 2, 3, … never reused.
	Seq     uint64
	Topic   string
	QoS     byte // 1 or 2
	Retain  bool
	Payload []byte
	// Time is when the message was accepted (set by AppendAsync if zero).
	Time time.Time
	// Origin and OriginPID are the local publisher's client id and packet id,
	// kept for QoS 2 DUP dedupe (RecentOrigin).
	Origin    string
	OriginPID uint16
	// Released is set by Next for a QoS 2 message whose PUBREC was already
	// received (MarkReleased): send PUBREL, not PUBLISH.
	Released bool
}

// Stats is a snapshot of the outbox counters.
type Stats struct {
	// Messages and Bytes are the depth: unacknowledged messages (on disk,
	// queued for it and in memory), and bytes of records in segment files
	// (the preallocated, unused rest of the active segment, at most
	// SegmentBytes, is not counted). After a restart Messages may
	// overstate: seqs acknowledged from memory in an earlier run never
	// reached disk, and such a seq gap counts until Next passes it.
	Messages, Bytes uint64
	// InMemory and InMemoryBytes are the memory window: unacknowledged
	// messages kept only in memory, and their record bytes.
	InMemory, InMemoryBytes uint64
	// MemoryAcked counts messages acknowledged upstream while only in
	// memory: never written.
	MemoryAcked uint64
	// ToDisk counts messages written to disk by why: "link_down" (appended
	// or in memory while the link was down), "slow_ack" (no upstream ack
	// within SpillAfter), "window_full" (MemoryBytes), "stopping" (in
	// memory at Close), "qos2" (QoS 2, and older messages in memory ahead
	// of it) and "disk" (DurabilityDisk).
	ToDisk map[string]uint64
	// OldestAge is the age of the oldest unacknowledged message, at segment
	// granularity (the first record time of the segment holding it, so it
	// may overstate by up to one segment's span).
	OldestAge time.Duration
	// Appended, Acked, Replayed (returned by Next again after a Rewind) and
	// DuplicatesAvoided (RecentOrigin hits) count since Open.
	Appended, Acked, Replayed, DuplicatesAvoided uint64
	// Dropped counts dropped messages by reason: "full_oldest",
	// "full_newest", "expired", "corrupt", and "storage" (refused, not
	// acknowledged to their publisher, while the storage failed).
	Dropped map[string]uint64
	// Blocked counts appends that had to wait for space under Block.
	Blocked uint64
	// TailCutBytes is how many bytes of torn or corrupt tail Open cut off.
	TailCutBytes uint64
	// SkippedBytes counts damaged bytes in the middle of segments that were
	// skipped, resynchronising on the next whole record (their messages
	// are counted in Dropped["corrupt"]).
	SkippedBytes uint64
	// BytesWritten counts every byte written to segments and the ack log;
	// PayloadBytes the payload bytes appended: their ratio is the write
	// amplification seen by the file system.
	BytesWritten, PayloadBytes, Fsyncs uint64
	// Full is true during a full-buffer episode.
	Full bool
	// StorageError is the storage error while the outbox refuses new
	// messages (disk full, read-only file system), empty when healthy. The
	// outbox retries with backoff and clears it by itself.
	StorageError string
}

type entry struct {
	seq        uint64
	start, end int // record bytes in the batch buffer
	t          time.Time
	done       func(uint64, error)
	err        error
	noWrite    bool      // acknowledged from memory: only its callback is due
	queued     time.Time // when it was queued for the committer
}

// heldEntry is a taken entry whose callback waits until the stream is
// written up to pos (the end of its record, or of the records before it):
// its record may be in the tail page, which waits to fill.
type heldEntry struct {
	e   entry
	pos int64 // stream position (streamBase + file offset)
}

type releaseReq struct {
	seq  uint64
	done func(error)
}

type counters struct {
	appended, acked, replayed, dupAvoided, blocked uint64
	tailCut, skippedBytes                          uint64
	bytesWritten, payloadBytes, fsyncs             uint64
	dropped                                        map[string]uint64
	memAcked                                       uint64
	toDisk                                         map[string]uint64
}

// Outbox is the durable store-and-forward log. Its methods are safe for
// concurrent use; Next is meant for one consumer (the upstream session).
type Outbox struct {
	opts         Options
	log          *slog.Logger
	lockF        *os.File
	pendingLimit int

	mu          sync.Mutex
	closed      bool
	failed      error // sticky I/O error of the committer
	nextSeq     uint64
	openNext    uint64 // nextSeq when Open returned (read-only after)
	qbuf        []byte
	qents       []entry
	writing     int64 // bytes of the batch the committer is writing
	pendAcks    seqSet
	ackIdle     bool    // the committer sleeps with no ack timer: the next pending ack must kick it
	batch       Batcher // brackets a commit's callbacks (SetCompletionBatch)
	pendRel     []releaseReq
	segs        []segInfo // oldest first; the last one is active
	diskBytes   int64
	writtenNext uint64 // seqs below it are written to their segment files
	writtenOff  int64  // size of the active segment at writtenNext
	durableOff  int64  // size of the active segment at durableNext
	durableNext uint64 // seqs below it are durable per the fsync mode
	floor       uint64 // every seq below it is acknowledged (or dropped)
	acked       seqSet // acknowledged seqs at or above floor
	released    map[uint64]struct{}
	recent      recentIndex
	cursor      uint64 // next seq Next looks at
	rgen        uint64 // bumped by Rewind
	maxGiven    uint64 // highest seq Next returned
	st          counters
	epOldest    episode
	epNewest    episode
	epBlock     episode
	epExpired   episode
	dataCh      chan struct{} // closed when durableNext advances
	spaceCh     chan struct{} // closed when queue or disk space frees
	closedCh    chan struct{}

	// The memory window (memory.go).
	mem         []memEntry // consecutive seqs, oldest first: memBuf[memHead:]
	memBuf      []memEntry
	memHead     int
	memBytes    int64 // record bytes of unacknowledged entries
	memLive     int   // unacknowledged entries
	linkUp      bool
	spillTimer  *time.Timer
	spillArmed  bool
	nextWaiting bool   // a Next waits on dataCh
	pushHook    func() // SetPushHook
	inCommit    int    // queued entries whose callback the committer has not handed over
	cbBusy      bool   // a goroutine is running done callbacks
	cbQueue     []completion

	kick      chan struct{}
	doneCh    chan struct{}
	closeOnce sync.Once
	closeErr  error

	// Owned by the committer goroutine.
	active      *os.File
	activeFirst uint64
	activeCount uint64
	activeNext  uint64 // seq after the last record of the active segment
	// unwrittenFrom is the active segment's offset from which its blocks
	// are preallocated (fallocate) or not allocated: a commit that writes
	// past it costs a journal transaction (see recycle.go). 0 when unknown.
	unwrittenFrom int64
	unwrittenSeg  uint64  // the segment unwrittenFrom describes
	activeSize    int64   // bytes of records in it, once this pass is written
	activeOff     int64   // bytes written to it (tail follows)
	tail          []byte  // bytes after activeOff placed but not yet written
	wctx          pageCtx // version-4 context of the page the next record goes in
	recBuf        []byte  // the record being placed (placeRecord)
	bodyBuf       []byte  // its body
	held          []heldEntry
	streamBase    int64 // stream position of offset 0 of the active segment
	stateF        *os.File
	stateSize     int64
	stateDirty    bool      // ack log written since its last sync
	stateSynced   time.Time // last sync of the ack log
	dirty         bool      // written but not fsync'd (FsyncInterval)
	spares        []string  // acknowledged segment files kept for reuse

	rmu sync.Mutex
	rd  segReader
	// rdPath is the path of segment rdPathFirst (guarded by rmu).
	rdPath      string
	rdPathFirst uint64

	// readerWaiting (guarded by mu) counts Next calls waiting for data:
	// the link is up and caught up, so commits are not held back for
	// CommitInterval.
	readerWaiting int

	testOnWait func() // tests: called (under mu) when Next is about to wait
	testCrash  bool   // tests: Close stops like kill -9 (no compaction, no syncs)
}

// Open opens (or creates) the outbox in opts.Dir, recovers a torn tail of
// the last segment, and starts the committer.
func Open(opts Options) (*Outbox, error) {
	c, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := makePrivateDir(c.Dir); err != nil {
		return nil, err
	}
	lockF, err := lockDir(c.Dir)
	if err != nil {
		return nil, err
	}
	o := &Outbox{
		opts:     c,
		log:      c.Logger,
		lockF:    lockF,
		released: map[uint64]struct{}{},
		dataCh:   make(chan struct{}),
		spaceCh:  make(chan struct{}),
		closedCh: make(chan struct{}),
		kick:     make(chan struct{}, 1),
		doneCh:   make(chan struct{}),
	}
	o.pendingLimit = maxPendingBytes
	if c.MaxBytes > 0 {
		o.pendingLimit = int(min(int64(maxPendingBytes), c.SegmentBytes))
	}
	o.st.dropped = map[string]uint64{"full_oldest": 0, "full_newest": 0, "expired": 0, "corrupt": 0, "storage": 0}
	o.st.toDisk = make(map[string]uint64, len(toDiskReasons))
	for _, r := range toDiskReasons {
		o.st.toDisk[r] = 0
	}
	o.epOldest = episode{reason: "full_oldest", advice: "the buffer reached max_bytes and the oldest messages are deleted to make room; restore the uplink or raise [buffer] max_bytes"}
	o.epNewest = episode{reason: "full_newest", advice: "the buffer reached max_bytes and new messages are refused; restore the uplink or raise [buffer] max_bytes"}
	o.epBlock = episode{reason: "full_block", advice: "the buffer reached max_bytes and local publishers are held back until space frees; restore the uplink or raise [buffer] max_bytes"}
	o.epExpired = episode{reason: "expired", advice: "messages older than [buffer] max_age are dropped unsent; restore the uplink or raise max_age"}
	if err := o.recover(); err != nil {
		o.closeFiles()
		return nil, fmt.Errorf("outbox: open %s: %w", c.Dir, err)
	}
	o.openNext = o.nextSeq
	o.spillTimer = time.AfterFunc(time.Hour, o.onSpillTimer)
	o.spillTimer.Stop()
	go o.run()
	return o, nil
}

// FirstSeqThisRun is the seq of the first message appended since Open.
// Messages below it were stored by an earlier run and may have been sent
// upstream before it ended: the bridge marks their PUBLISH as DUP.
func (o *Outbox) FirstSeqThisRun() uint64 { return o.openNext }

// lockDir takes an exclusive flock on Dir/LOCK so that two processes never
// share one outbox; the kernel drops it when the process dies.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, filePerm)
	if err != nil {
		return nil, fmt.Errorf("outbox: lock dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("outbox: %s is in use by another process (flock: %w)", dir, err)
	}
	return f, nil
}

func (o *Outbox) closeFiles() {
	if o.active != nil {
		o.active.Close()
	}
	if o.stateF != nil {
		o.stateF.Close()
	}
	if o.lockF != nil {
		o.lockF.Close()
	}
}

// AppendAsync assigns the next seq to m and stores it. Under
// DurabilityMemory a QoS 1 message appended while the link is up (see
// SetLinkUp) is kept in the memory window; anything else is queued for the
// committer, after every older message in memory. done is called exactly
// once and in seq order: for a message in memory when upstream
// acknowledges it (from the goroutine calling Ack) or once its spill to
// disk is durable, whichever comes first; otherwise from the committer
// after the message is durable per the fsync mode; or with an error if it
// could not be stored (ErrFull under DropNewest, then with seq 0; an I/O
// error). m.Payload is kept, not copied: do not change it afterwards.
// Under Block it waits until space frees or ctx ends. It returns an error
// only when the message was not queued at all (then done is not called):
// ErrClosed, an invalid message, an earlier I/O error, or ErrFull wrapping
// ctx.Err() when a Block wait ends. done runs on the committer goroutine:
// it must be quick and must not block (never call Append or Close in it;
// AppendAsync, Ack and MarkReleased are fine).
func (o *Outbox) AppendAsync(ctx context.Context, m Message, done func(seq uint64, err error)) error {
	if m.QoS != 1 && m.QoS != 2 {
		return fmt.Errorf("outbox: append: qos %d: only QoS 1 and 2 are stored (QoS 0 goes to the Ring)", m.QoS)
	}
	if len(m.Topic) > 0xffff || len(m.Origin) > 0xffff {
		return fmt.Errorf("outbox: append: topic or origin longer than 65535 bytes")
	}
	size := recordSize(&m)
	if size-recHeaderSize > maxRecordBody {
		return fmt.Errorf("outbox: append: message of %d bytes exceeds the %d byte limit", size, maxRecordBody)
	}
	if done == nil {
		done = func(uint64, error) {}
	}
	o.mu.Lock()
	for {
		if o.closed {
			o.mu.Unlock()
			return ErrClosed
		}
		if o.failed != nil {
			err := o.failed
			o.st.dropped["storage"]++
			o.mu.Unlock()
			return err
		}
		if len(o.qbuf) > 0 && len(o.qbuf)+size > o.pendingLimit {
			if err := o.waitLocked(ctx, o.spaceCh); err != nil {
				o.mu.Unlock()
				return err
			}
			continue
		}
		// Under DropNewest a refusal lasts for the episode (until usage is
		// back under 3/4 of MaxBytes): a later message must not be stored
		// after an earlier one was refused — it would overtake it when the
		// publisher resends — which a slightly smaller message, or usage
		// overstated while a pass rotates segments, would otherwise allow.
		refusing := o.opts.Full == DropNewest && o.epNewest.active
		if o.opts.MaxBytes > 0 && o.opts.Full != DropOldest && (refusing || o.usageLocked()+padWeight(int64(size)) > o.opts.MaxBytes) {
			if o.opts.Full == DropNewest {
				o.st.dropped["full_newest"]++
				o.epNewest.drop(o.log, 1, "max_bytes", o.opts.MaxBytes)
				// Older messages in memory complete first: they go ahead.
				o.spillLocked(len(o.mem), reasonWindowFull)
				o.queueLocked(entry{done: done, err: ErrFull})
				o.mu.Unlock()
				o.wake()
				return nil
			}
			if !o.epBlock.active {
				o.epBlock.drop(o.log, 1, "max_bytes", o.opts.MaxBytes)
			} else {
				o.epBlock.n++
			}
			o.st.blocked++
			if err := o.waitLocked(ctx, o.spaceCh); err != nil {
				o.mu.Unlock()
				if errors.Is(err, ErrClosed) {
					return err
				}
				return fmt.Errorf("%w: %w", ErrFull, err)
			}
			continue
		}
		break
	}
	m.Seq = o.nextSeq
	o.nextSeq++
	if m.Time.IsZero() {
		m.Time = o.opts.Now()
	}
	o.st.appended++
	o.st.payloadBytes += uint64(len(m.Payload))
	reason := o.memReasonLocked(&m, size)
	if reason == "" {
		spilled, hook := o.memPushLocked(m, size, done)
		fn := o.pushHook
		o.mu.Unlock()
		if spilled {
			o.wake()
		}
		if hook {
			fn()
		}
		return nil
	}
	// To disk: every older message in memory goes first, so the segments
	// hold ascending seqs and every memory entry stays newer than every
	// disk entry.
	queuedBefore := len(o.qents)
	o.spillLocked(len(o.mem), reason)
	o.st.toDisk[reason]++
	start := len(o.qbuf)
	o.qbuf = appendRecord(o.qbuf, &m)
	o.queueLocked(entry{seq: m.Seq, start: start, end: len(o.qbuf), t: m.Time, done: done})
	if m.QoS == 2 && m.Origin != "" {
		o.recent.add(makeOriginKey(m.Origin, m.OriginPID), m.Seq)
	}
	wake := o.opts.CommitInterval == 0 || queuedBefore == 0 || o.readerWaiting > 0 ||
		(start < o.commitEarly() && len(o.qbuf) >= o.commitEarly()) ||
		(start < o.commitCap() && len(o.qbuf) >= o.commitCap())
	o.mu.Unlock()
	if wake {
		o.wake()
	}
	return nil
}

// Append stores m and waits until its done callback would fire: durable
// per the fsync mode, or, for a message in the memory window, acknowledged
// upstream or spilled (at most SpillAfter plus a commit).
func (o *Outbox) Append(ctx context.Context, m Message) (uint64, error) {
	type result struct {
		seq uint64
		err error
	}
	ch := make(chan result, 1)
	if err := o.AppendAsync(ctx, m, func(seq uint64, err error) { ch <- result{seq, err} }); err != nil {
		return 0, err
	}
	r := <-ch // the committer completes every queued entry, also on Close
	return r.seq, r.err
}

// waitLocked waits, with o.mu released, until ch is closed, ctx ends or
// the outbox closes.
func (o *Outbox) waitLocked(ctx context.Context, ch chan struct{}) error {
	o.mu.Unlock()
	defer o.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-o.closedCh:
		return ErrClosed
	}
}

func (o *Outbox) wake() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// padWeight is what a record of size bytes may cost on disk, at most,
// when it is admitted under MaxBytes: itself, the padding before it when
// it does not fit in the rest of its page (spread over the page's
// records), and one page of slack for the padding a commit of a partly
// filled last page adds (holdsTail).
func padWeight(size int64) int64 {
	switch {
	case size >= pageSize:
		return size + 2*pageSize
	case 2*size >= pageSize:
		return 2 * pageSize
	}
	return size + (size*size+pageSize-size-1)/(pageSize-size) + pageSize
}

// usageLocked is what counts against MaxBytes: segments, queued records
// and the memory window.
func (o *Outbox) usageLocked() int64 {
	return o.diskBytes + o.writing + int64(len(o.qbuf)) + o.memBytes
}

// broadcast closes *ch and replaces it, waking every waiter.
func broadcast(ch *chan struct{}) {
	close(*ch)
	*ch = make(chan struct{})
}

// Ack records that upstream confirmed seq (PUBACK, or PUBCOMP for QoS 2).
// Acks may come in any order. They take effect for Next at once. The ack
// of a message still in memory completes it (its done callback runs, in
// seq order, possibly from this goroutine) and is never written: the
// message never reaches disk. Other acks are written to the ack log by
// the next committer pass (at most ackInterval later) and fsync'd lazily:
// after a power loss a lost ack only causes a resend (or a PUBREL resend
// for QoS 2). Fully acknowledged segments are deleted by that pass. A
// message queued for the committer but not yet written can be acked.
func (o *Outbox) Ack(seq uint64) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	if seq == 0 || seq >= o.nextSeq {
		o.mu.Unlock()
		return fmt.Errorf("outbox: ack %d: no such message", seq)
	}
	if seq < o.floor || o.acked.has(seq) {
		o.mu.Unlock()
		return nil
	}
	if seq != o.floor && o.acked.len() >= maxOutOfOrderAcks {
		o.mu.Unlock()
		o.log.Debug("outbox: too many out-of-order acks; this one will be resent", "seq", seq)
		return nil
	}
	if len(o.mem) > 0 && seq >= o.mem[0].m.Seq {
		o.st.acked++
		var buf [4]completion // no allocation for the common case
		due, kick := o.memAckLocked(seq, buf[:0])
		o.mu.Unlock()
		if kick {
			o.wake()
		}
		if len(due) > 0 {
			o.runCompletions(due)
		}
		return nil
	}
	o.ackLocked(seq, seq+1)
	o.pendAcks.add(seq, seq+1)
	o.st.acked++
	kick := o.ackIdle // the committer sleeps without its ack timer
	o.ackIdle = false
	o.mu.Unlock()
	// Otherwise no wake: acks ride on the next pass, or the committer's ack
	// timer, so a stream of acks costs one small write per pass, not one each.
	if kick {
		o.wake()
	}
	return nil
}

// ackLocked marks [lo, hi) acknowledged and returns how many were not yet.
func (o *Outbox) ackLocked(lo, hi uint64) uint64 {
	lo = max(lo, o.floor)
	if hi <= lo {
		return 0
	}
	var n uint64
	if lo == o.floor && (o.acked.len() == 0 || o.acked.s[0].lo > hi) {
		n, o.floor = hi-lo, hi // in order: the common case
	} else {
		n = o.acked.add(lo, hi)
		o.floor = o.acked.popFrom(o.floor)
	}
	if len(o.released) > 0 {
		if hi-lo == 1 {
			delete(o.released, lo)
		} else {
			for s := range o.released {
				if s >= lo && s < hi {
					delete(o.released, s)
				}
			}
		}
		for s := range o.released {
			if s < o.floor {
				delete(o.released, s)
			}
		}
	}
	return n
}

// MarkReleased records that the PUBREC of QoS 2 message seq arrived. done is
// called once the mark is durable (fsync'd, in every fsync mode); only then
// may the session send PUBREL, so that after a crash Next returns the
// message with Released set rather than resending a PUBLISH. done is called
// from the committer, or at once from the caller's goroutine for an unknown
// seq or a closed outbox.
func (o *Outbox) MarkReleased(seq uint64, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	o.mu.Lock()
	switch {
	case o.closed:
		o.mu.Unlock()
		done(ErrClosed)
		return
	case o.failed != nil:
		err := o.failed
		o.mu.Unlock()
		done(err)
		return
	case seq == 0 || seq >= o.writtenNext:
		o.mu.Unlock()
		done(fmt.Errorf("outbox: mark released %d: no such message", seq))
		return
	case seq < o.floor || o.acked.has(seq):
		o.mu.Unlock()
		done(nil) // already completed; nothing left to resend
		return
	}
	o.pendRel = append(o.pendRel, releaseReq{seq, done})
	o.mu.Unlock()
	o.wake()
}

// flush waits until one full committer pass has run after the call: every
// ack made before it is written and fully acknowledged segments are deleted.
func (o *Outbox) flush() error {
	done := make(chan error, 1)
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	o.pendRel = append(o.pendRel, releaseReq{seq: 0, done: func(err error) { done <- err }})
	o.mu.Unlock()
	o.wake()
	return <-done
}

// RecentOrigin reports whether a QoS 2 message from this local client and
// packet id was appended recently (the last 16384 QoS 2 appends, rebuilt on
// Open from the last 16 MiB of the log), and its seq. Packet ids are
// reused by clients, so ask only for a PUBLISH with its DUP flag set (a
// resend); a hit then means the original is stored and the resend must be
// dropped (acknowledge it locally). A hit is counted in
// Stats.DuplicatesAvoided.
func (o *Outbox) RecentOrigin(origin string, pid uint16) (seq uint64, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	seq, ok = o.recent.get(makeOriginKey(origin, pid))
	if ok {
		o.st.dupAvoided++
	}
	return seq, ok
}

// Stats returns a snapshot of the counters.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := Stats{
		Bytes:             uint64(o.diskBytes),
		Appended:          o.st.appended,
		Acked:             o.st.acked,
		Replayed:          o.st.replayed,
		DuplicatesAvoided: o.st.dupAvoided,
		Blocked:           o.st.blocked,
		TailCutBytes:      o.st.tailCut,
		SkippedBytes:      o.st.skippedBytes,
		BytesWritten:      o.st.bytesWritten,
		PayloadBytes:      o.st.payloadBytes,
		Fsyncs:            o.st.fsyncs,
		Full:              o.epOldest.active || o.epNewest.active || o.epBlock.active,
		StorageError:      errString(o.failed),
		Dropped:           make(map[string]uint64, len(o.st.dropped)),
	}
	for k, v := range o.st.dropped {
		s.Dropped[k] = v
	}
	s.MemoryAcked = o.st.memAcked
	s.ToDisk = make(map[string]uint64, len(o.st.toDisk))
	for k, v := range o.st.toDisk {
		s.ToDisk[k] = v
	}
	s.InMemory, s.InMemoryBytes = uint64(o.memLive), uint64(o.memBytes)
	// Every seq below nextSeq is stored (on disk, queued or in memory) or
	// acknowledged; after a restart also seq gaps not yet passed by Next.
	if o.nextSeq > o.floor {
		s.Messages = o.nextSeq - o.floor - o.acked.countIn(o.floor, o.nextSeq)
	}
	if s.Messages > 0 && s.Messages == uint64(o.memLive) {
		for _, e := range o.mem {
			if !e.acked {
				s.OldestAge = max(0, o.opts.Now().Sub(e.m.Time))
				break
			}
		}
	}
	if s.Messages > uint64(o.memLive) {
		for i := len(o.segs) - 1; i >= 0; i-- {
			if o.segs[i].first <= o.floor {
				if t := o.segs[i].firstTime; !t.IsZero() {
					s.OldestAge = max(0, o.opts.Now().Sub(t))
				}
				break
			}
		}
	}
	return s
}

// Close spills the memory window, writes and fsyncs everything queued,
// completes every callback,
// stops the committer and closes the files. It is idempotent.
func (o *Outbox) Close() error {
	o.closeOnce.Do(func() {
		o.mu.Lock()
		o.spillLocked(len(o.mem), reasonStopping)
		o.closed = true
		close(o.closedCh)
		o.spillTimer.Stop()
		o.mu.Unlock()
		o.wake()
		<-o.doneCh
		o.rmu.Lock()
		o.rd.close()
		o.rmu.Unlock()
		o.mu.Lock()
		o.closeErr = o.failed
		o.mu.Unlock()
		if err := o.lockF.Close(); err != nil && o.closeErr == nil {
			o.closeErr = fmt.Errorf("outbox: close: %w", err)
		}
	})
	return o.closeErr
}
