package outbox

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// A storage error (disk full, a file system gone read-only, an I/O error)
// makes the outbox refuse new messages (their publishers are not
// acknowledged, so they keep them) until a retry finds the storage working
// again: retries start after retryMin and back off to retryMax.
const (
	retryMin = 250 * time.Millisecond
	retryMax = 30 * time.Second
)

// Err returns the storage error while the outbox refuses new messages, or
// nil when it accepts them.
func (o *Outbox) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failed
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// recoverStorage resumes after a storage error, on the committer with the
// queue empty (AppendAsync refuses while failed). What the failed passes
// may have left in the active segment after its last durable record is
// cut off, the seqs they were given are acknowledged (nothing waits for
// them), the ack log is rewritten whole, and a new active segment starts
// at the next seq. Any step failing leaves the outbox failed for the next
// try.
func (o *Outbox) recoverStorage() error {
	o.mu.Lock()
	last := o.segs[len(o.segs)-1]
	next, written := o.nextSeq, o.writtenNext
	if next > written {
		o.ackLocked(written, next)
		o.recent.forget(written, next)
	}
	o.mu.Unlock()
	if err := o.compact(); err != nil {
		return err
	}
	o.active.Close() // possibly closed already by a failed rotation
	o.dirty = false
	if last.count == 0 {
		// The active segment holds no record: make it again at next.
		if err := os.Remove(o.segPath(last.first)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else {
		// Seal it at its last durable record, before a newer one exists.
		if err := truncateSync(o.segPath(last.first), last.bytes); err != nil {
			return fmt.Errorf("seal %s: %w", o.segPath(last.first), err)
		}
	}
	// A segment half made by a failed rotation (named by the first seq not
	// written), and any left at next by an earlier try.
	for _, s := range []uint64{written, next} {
		if s == last.first {
			continue
		}
		if err := os.Remove(o.segPath(s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := o.createSegment(next); err != nil {
		return err
	}
	f, err := os.OpenFile(o.segPath(next), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	o.active, o.activeFirst, o.activeCount, o.activeSize, o.activeOff = f, next, 0, segHeaderSize, segHeaderSize
	o.wctx.reset()
	o.mu.Lock()
	if last.count == 0 {
		o.diskBytes -= last.bytes
		o.segs = o.segs[:len(o.segs)-1]
	}
	o.segs = append(o.segs, segInfo{first: next, bytes: segHeaderSize})
	o.diskBytes += segHeaderSize
	o.writtenNext, o.writtenOff, o.durableNext, o.durableOff = next, segHeaderSize, next, segHeaderSize
	broadcast(&o.dataCh)
	cause := o.failed
	o.failed = nil
	refused := o.st.dropped["storage"]
	o.mu.Unlock()
	o.log.Info("outbox: storage works again; accepting messages", "dir", o.opts.Dir, "was", cause, "refused_so_far", refused)
	return nil
}
