package outbox

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Recycling. A fully acknowledged segment is renamed to a spare
// (<first>.spare) rather than deleted, up to maxSpares of them, and the
// next new segment takes a spare's place (rename, new header, fallocate
// the rest): its blocks are written already, so a commit into it costs the
// data pages alone, without the journal block that converting
// preallocated (unwritten) blocks costs; RocksDB and PostgreSQL recycle
// their logs the same way. What lies after the records of a recycled
// segment is its old contents: records of lower seqs, which every reader
// rejects (seqs must rise from the segment's first), and remnants that
// fail their checksum. A spare costs at most SegmentBytes of disk each and
// is not counted in Stats.Bytes or MaxBytes.
const (
	spareSuffix = ".spare"
	maxSpares   = 5
)

func spareName(first uint64) string { return fmt.Sprintf("%020d%s", first, spareSuffix) }

// listSpares returns the spare files in dir.
func listSpares(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), spareSuffix) && e.Type().IsRegular() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// reuseSpare renames a spare to path and opens it for writing, returning
// its size (what fallocate need not reserve again), or a nil file if there
// is no spare.
func (o *Outbox) reuseSpare(path string) (*os.File, int64, error) {
	for len(o.spares) > 0 {
		spare := o.spares[len(o.spares)-1]
		o.spares = o.spares[:len(o.spares)-1]
		if err := os.Rename(spare, path); err != nil {
			o.log.Warn("outbox: cannot reuse a spare segment; creating a new one", "file", spare, "err", err)
			continue
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, 0, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, max(fi.Size(), segHeaderSize), nil
	}
	return nil, 0, nil
}

// prefillFree is how many times the prefill's size the file system must
// have free for a new outbox to prefill at all.
const prefillFree = 4

// noPrefill turns prefill off (tests: the wear of an outage longer than
// the prefilled segments).
var noPrefill bool

// prefill writes, once, when a new outbox is created under CommitInterval,
// maxSpares+1 spare files of SegmentBytes zeros (fsync'd): the first
// segment and the spares for the next ones (six: an outage of 48 MiB by
// default, about 6 hours at 20 msg/s, commits without the journal). A
// commit into blocks written already costs its data pages alone; into
// preallocated (unwritten) blocks
// it also costs the journal block that records their conversion, about
// 12 KiB per commit, measured: 7.8 instead of 4.6 disk bytes per payload
// byte at 20 msg/s. The first outage of a new gateway therefore pays the
// same as later ones, for a one-time write of 6 x SegmentBytes (48 MiB by
// default) at install. It is skipped (Info) when the file system has less
// than prefillFree times that free, and a failure only costs wear (Warn).
func (o *Outbox) prefill() {
	if noPrefill {
		return
	}
	n := maxSpares + 1
	total := int64(n) * o.opts.SegmentBytes
	var fs unix.Statfs_t
	if err := unix.Statfs(o.opts.Dir, &fs); err != nil || int64(fs.Bavail)*int64(fs.Bsize) < prefillFree*total {
		o.log.Info("outbox: not enough free space to prefill segments; the first outage writes into new (preallocated) segments", "dir", o.opts.Dir, "prefill_bytes", total)
		return
	}
	// One page per write: Linux (6.16 and later) gives ext4 files large
	// folios sized by the write, and each later commit that dirties a clean
	// folio is counted whole in the process's write_bytes (/proc/PID/io,
	// iotop), so 1 MiB writes here made every 60 KiB commit show as 1 MiB
	// there (the device still wrote 60 KiB). Page-sized writes keep the
	// count true, for 2,048 syscalls a segment, once.
	zeros := make([]byte, pageSize)
	for i := range n {
		path := filepath.Join(o.opts.Dir, fmt.Sprintf("prefill%d%s", i, spareSuffix))
		if err := writeZeros(path, o.opts.SegmentBytes, zeros); err != nil {
			os.Remove(path)
			o.log.Warn("outbox: cannot prefill a spare segment; the first outage writes into new (preallocated) segments", "file", path, "err", err)
			break
		}
		o.spares = append(o.spares, path)
	}
	if err := syncDir(o.opts.Dir); err != nil {
		o.log.Warn("outbox: cannot sync dir after prefilling segments", "dir", o.opts.Dir, "err", err)
	}
}

// writeZeros creates path holding size zero bytes, durably.
func writeZeros(path string, size int64, zeros []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return err
	}
	for off := int64(0); off < size && err == nil; {
		k := min(int64(len(zeros)), size-off)
		_, err = f.WriteAt(zeros[:k], off)
		off += k
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
