package outbox

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
	maxSpares   = 2
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
