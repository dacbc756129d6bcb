// Package outbox is edgegw's durable, QoS-aware store-and-forward log: the
// bridge appends every QoS 1/2 message bound upstream, the upstream session
// reads them back in order with Next, and acknowledges them with Ack.
// QoS 0 messages go to a Ring, a bounded in-memory FIFO that drops oldest.
//
// # Memory window first
//
// Under DurabilityMemory (the default) a QoS 1 message appended while the
// upstream session reports the link up (SetLinkUp) stays in a bounded
// memory window (Options.MemoryBytes): Next returns it at once, and its
// Ack completes it (done fires) without anything being written. It is
// spilled to the committer, and completes once durable, when it waited
// Options.SpillAfter for its ack ("slow_ack"), when the window is full
// ("window_full"), when the link drops ("link_down") or at Close
// ("stopping"); whichever of ack and durable spill comes first completes
// it, exactly once. QoS 2 messages, messages appended while the link is
// down, and everything under DurabilityDisk go to the committer, after
// every older message in memory, so every memory entry is newer than
// every disk entry and records stay in ascending seq order. Done
// callbacks run one at a time in seq order (runCompletions), whether the
// committer or an Ack from memory completes them. Stats.ToDisk and
// Stats.MemoryAcked count the two paths. A memory entry spilled after
// Next gave it is not given again until a Rewind.
//
// Seqs acknowledged from memory never reach disk: segments hold ascending
// seqs with gaps. Recovery and the reader accept gaps; the reader treats a
// gap met after a restart as done. Such seqs may be given again after a
// crash (nothing durable refers to them); Open starts above every seq the
// segments or the ack log mention, so a new message never counts as
// acknowledged.
//
// # On disk
//
// Dir (0700, files 0600) holds segment files named by their first seq
// (00000000000000000001.seg), an ack log (acks.log) and a LOCK file (flock:
// one process per outbox). A segment starts with a 16-byte header (magic
// "EGWOBX", version, first seq) and holds records of
// length | CRC32C (Castagnoli) | body; the body carries the seq, time, QoS,
// retain flag, topic and payload, and for QoS 2 the origin client id and
// packet id (record.go and record4.go have the layouts: version 4 is
// written, records laid out in 4 KiB pages: a record never crosses a page
// boundary and the rest of a page that cannot hold the next record is zero
// padding; each page is the context of its records: the first one in a
// page carries its absolute seq, time and topic, each later one a seq
// delta, a time delta and a reference to a topic seen earlier in the page,
// so a 100-byte payload on a 13-byte topic takes about 130 bytes as the
// first record of a page and 109 after it, 37 to a page; versions 3, 2
// and 1 (0.1) are still read, and an active segment of an earlier version
// is sealed at Open, its successor written in version 4). A new segment is written in place in a file
// already SegmentBytes long (a recycled or prefilled spare, else
// preallocated with fallocate), so a commit changes no file size; it is
// cut to its records when sealed (before the next one is created). The ack log holds
// checksummed records: the ack floor, ranges of acknowledged seqs and QoS
// 2 release marks; it is compacted (write temp, fsync, rename, fsync dir)
// when it passes 256 KiB and at Close. A segment is deleted as soon as
// every message in it is acknowledged (or dropped), or kept as a spare
// for reuse (recycle.go); the active (last)
// segment is never deleted, so its name and records carry the next seq
// across restarts: seqs start at 1, rise and are never reused (they may
// have gaps: readers never rely on next.first - first).
//
// # Durability and flash wear
//
// One committer goroutine takes everything queued since its last pass,
// writes it with one write call, syncs with fdatasync (per FsyncMode),
// then calls the done callbacks in seq order. FsyncBatch (default) is
// group commit: a message is reported durable only after the sync that
// covers it, and one sync serves every message of the pass. With
// CommitInterval the committer commits at most once per interval while no
// Next waits for data (the link is down or behind), and writes whole pages
// only: the partly filled last page waits in memory until it fills, or its
// oldest record has waited CommitInterval, or a Next waits for it, or at
// Close; then it is written padded with zeros, and the next commit starts
// on a new page. A waiting reader, a release mark or Close end the
// interval at once; so do commitEarlyBytes (32 KiB) queued, where the
// commit costs no journal (the active segment's blocks are written
// already: prefilled or recycled). Where it does (a fresh, fallocated
// segment: about 12 KiB of journal per commit), the committer groups
// instead: past commitEarlyBytes it commits as soon as the queue stops
// growing (no append for four times the queue's mean inter-arrival time,
// at least 1 ms), at commitCapBytes (256 KiB) or at the interval, so a
// publisher keeping a window of unacknowledged messages gets one commit
// per window, and a steady stream one per interval. So no commit rewrites a page holding
// acknowledged records: this is a durability gain as well as a wear gain,
// since a torn write after a power cut can damage only the commit in
// progress, whose messages were not yet acknowledged (a page written again
// in place can lose what an earlier commit made durable in it). The one
// exception is the first commit after Open, which continues the last page
// the previous run left. A message waits for its PUBACK at most about
// CommitInterval: the last page's deadline counts from when its oldest
// message was queued. FsyncAlways writes and syncs each message on its own.
// FsyncInterval syncs every FsyncInterval and reports messages after the
// write, before the sync: that survives kill -9 of the process but not a
// power loss, and is weaker than the other modes; a failed periodic sync
// is a storage error (below). From disk Next only returns messages that
// are durable in this sense; from the memory window it returns messages at
// once (their local publisher has not been acknowledged yet, so a crash
// loses nothing it was told is safe). MarkReleased is always synced before its
// callback, in every mode. Acks are written lazily (with the next pass, at
// most 100 ms later; the committer's ack timer runs only while acks wait,
// so an idle outbox has no periodic wake-up) and synced at most once per second while they change:
// after a power cut at most about 1.1 s of acknowledgements is lost, so
// the messages resent are at most 1.1 s times the drain rate (a lost ack
// only causes a resend).
//
// Measured with BenchmarkWear (wear_test.go: ext4 on its own loop device,
// 4 KiB blocks, journal; link down, 100-byte QoS 1 messages, block-device
// bytes per payload byte, journal included; 30 s windows): 0.1 wrote 151
// at 20 msg/s, 157 at 200 msg/s and 1.61 at saturation; version 2 with
// CommitInterval 1s in fallocated segments 7.6, 2.2 and 1.32 (the last
// page rewritten per commit, and about 12 KiB of journal per commit
// recording that unwritten blocks now hold data). Version 3 with
// CommitInterval 2s (the gateway's default), whole pages and prefilled
// segments: 2.94, 1.39 and 1.33; in recycled segments (a later outage)
// 2.73 and 1.44 at 20 and 200 msg/s; in fresh fallocated segments (an
// outage longer than the prefilled three) 5.05, 1.79 and 1.35. Now, with
// version-4 compact records (37 to a page instead of 31), the same runs:
// 2.66, 1.23 and 1.11; recycled 2.66 and 1.22; fresh 5.05, 1.62 and 1.13,
// and 1.47 at 200 msg/s once fresh segments group until the interval.
// At saturation the figure is the record size (about 110 bytes per
// 100-byte payload). What remains at 20 msg/s is
// mostly ext4's own: every write dirties the inode's mtime, which the 5 s
// journal commit writes (about 12 KiB per 5 s, 1.2 B/B at 20 msg/s)
// whatever we do, unless the file system is mounted lazytime.
//
// Blocks already written cost a commit nothing in the journal; blocks
// preallocated with fallocate cost it that conversion (12 KiB a commit,
// measured on a loop ext4 with 56 KiB commits; appending to a file that
// is not preallocated costs 20 KiB). So a new outbox (under
// CommitInterval) prefills once its first segment and five spares with
// zeros, 6 x SegmentBytes (48 MiB by default) written at creation
// (recycle.go), and acknowledged segments are kept as spares (up to
// five). An outage longer than those six segments writes into new
// fallocated segments, which pay the conversion per commit again (the
// "fresh" rows), grouped as above. Zeroing a segment ahead costs 1 B/B
// once; the conversion costs 12 KiB per commit, more than that below
// about 60 msg/s (commits of less than 12 KiB of payload: 5.05 instead of
// 2.66 B/B at 20 msg/s), less above it; a prefilled spare is reused by
// every later outage, so the prefill pays for itself in the first long
// outage at sensor rates.
//
// # Storage errors
//
// A write or sync error (disk full, a file system gone read-only) makes
// the outbox refuse new messages: their done reports the error, so their
// publishers are not acknowledged and keep them; they are counted as
// Dropped["storage"], and Err and Stats.StorageError say what is wrong.
// The committer retries with backoff (250 ms doubling to 30 s): it seals
// the active segment at its last durable record, acknowledges the seqs the
// failed passes were given, rewrites the ack log and starts a new segment;
// once that works the outbox accepts messages again by itself.
//
// # Recovery and start-up
//
// Open does not read the whole backlog. A segment is sealed before the
// next one is created, so only the last segment can be torn: it is scanned
// and cut at its last whole record (logged at Warn with file, offset and
// bytes cut; counted in Stats.TailCutBytes); zeros after the records are
// its preallocated space, not a torn tail. Open never fails because of it.
// Sealed segments are known from their names and sizes; only their first
// record's time is read (for OldestAge). The last 16 MiB of the log are
// read to rebuild the RecentOrigin window.
//
// A damaged record costs at most the rest of its page (4 KiB): the later
// records of a page are deltas against it. When a record fails its
// length, checksum or seq check, the reader (or Open's scan of the last
// segment) resynchronises on the next offset holding a whole absolute
// record (the first of a page) with a higher seq (random bytes pass all
// checks with a chance of about 2^-32 per offset); a delta record's
// checksum also covers the previous record's seq, so a record is never
// read against the wrong context (nor an old record of a recycled file
// taken for a new one). A delta record whose page context is lost is
// damage like any other. The records in between are counted as
// Dropped["corrupt"], their
// bytes as Stats.SkippedBytes, and logged at Error with file, offset and
// seqs: corruption in the middle is a disk fault, a torn tail a crash. A
// damaged segment header discards nothing: the records are read by their
// own checks (and the last segment's header is rewritten). Measured: Open
// with 1,000,000 queued 100-byte messages (19 segments of 8 MiB) took
// 6-12 ms with version-1 segments and takes about 20 ms now (the
// preallocated zeros after the last segment's records are read to tell
// them from a torn tail).
//
// # Memory
//
// Memory does not grow with the backlog: the outbox keeps per segment only
// its first seq, count, size and first time; a read cursor and one open
// file with a 256 KiB buffer; acknowledged seqs above the first unacked
// one as ranges (bounded); the QoS 2 release marks in flight; the
// RecentOrigin window (16384 QoS 2 entries, about 1 MiB); and at most 1 MiB of queued
// appends (AppendAsync waits beyond it). Measured: heap in use 0.5 MiB
// empty, 0.5 MiB after appending 1,000,000 QoS 1 messages and after
// reopening them; 1.5 MiB with 1,000,000 QoS 2 messages (the full
// RecentOrigin window).
//
// # Why our own log
//
// We prefer a well-kept library where one fits, so we measured
// github.com/tidwall/wal v1.1.8 and go.etcd.io/bbolt v1.4.0 against this
// log in a scratch module on this machine (2 shared vCPU, ext4 on virtio;
// disk bytes from /proc/self/io write_bytes, i.e. what reaches the block
// device; 100-byte payloads, the same 137-byte record for all three; each
// cycle appends a batch durably, reads it back and releases it). Disk bytes
// were the same on every run; msg/s varied about 2x with the machine's load
// (two runs given):
//
//	                                     outbox        tidwall/wal    bbolt
//	10 msgs per fsync          msg/s     41k-62k       10k-13k        13k-27k
//	                  disk B/payload B   5.6           8.2            61
//	1000 msgs per fsync        msg/s     300k-370k     600k-850k      200k-330k
//	                  disk B/payload B   1.52          1.43           4.0
//	drain a 200k backlog,      msg/s     630k-700k     7k-8k          -
//	  release every 100 disk B/payload B 0.0002        392            -
//
// tidwall/wal appends big batches faster (no checksum, no callbacks), but
// releasing acknowledged entries (TruncateFront) rewrites the rest of the
// first segment each time: draining a backlog wrote 392 bytes to the SD
// card per payload byte, at 8k msg/s. It also has no record checksums (a
// flipped byte goes unnoticed), its Open fails with ErrCorrupt on a torn
// last record (we must start regardless), it keeps whole segments in
// memory, and it has no place for out-of-order acks or QoS 2 release marks,
// so we would keep our own ack log beside it anyway. bbolt is a
// copy-on-write B+tree: every commit rewrites pages and its meta page (61
// disk bytes per payload byte at 10 messages per fsync, the common case at
// moderate rates), deletes just as costly. A segmented append-only log with
// whole-segment deletion writes each message once, sequentially, and frees
// space without rewriting: that is this job. The comparison is kept in
// testdata/walcmp (its own module; run `go test -bench .` there).
//
// Figures from `go test -run x -bench . ./bridge/outbox/` (this package,
// same machine, ranges over runs under varying load): FsyncBatch appends of
// 100-byte payloads from one producer 0.5M-2.2M msg/s; 64 publishers each
// waiting for durability (Append) 32k-150k msg/s; Next+Ack read-back
// 230k-590k msg/s; FsyncAlways 0.7k-7.6k msg/s (one fsync each); 1.45
// bytes written per payload byte with version-1 records (1.29 with
// version 2).
package outbox
