package outbox

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// pageCtx is the context of version-4 records in one page: the seq, time
// and distinct topics of the records before the next one. The writer and
// the reader keep the same context, each from the records it placed or
// read; the zero value is no context (the next record is absolute).
type pageCtx struct {
	has   bool
	page  int64 // file offset / pageSize of the records it describes
	seq   uint64
	ms    int64
	arena []byte // the topics, one after the other
	ends  []int  // topic i is arena[ends[i-1]:ends[i]]
}

func (c *pageCtx) reset() {
	c.has = false
	c.arena, c.ends = c.arena[:0], c.ends[:0]
}

func (c *pageCtx) topic(i int) []byte {
	from := 0
	if i > 0 {
		from = c.ends[i-1]
	}
	return c.arena[from:c.ends[i]]
}

// find returns the index of topic t in the page, or -1.
func (c *pageCtx) find(t []byte) int {
	for i := range c.ends {
		if bytes.Equal(c.topic(i), t) {
			return i
		}
	}
	return -1
}

func (c *pageCtx) addTopic(t []byte) {
	c.arena = append(c.arena, t...)
	c.ends = append(c.ends, len(c.arena))
}

// note makes the record v, which starts in page page, the last of the
// context (absolute: the first of a new one).
func (c *pageCtx) note(page int64, v *recView, ms int64, absolute bool) {
	if absolute || !c.has || c.page != page {
		c.reset()
		c.has, c.page = true, page
		c.addTopic(v.topic)
	} else if c.find(v.topic) < 0 {
		c.addTopic(v.topic)
	}
	c.seq, c.ms = v.seq, ms
}

// clone returns a copy that shares no memory with c.
func (c *pageCtx) clone() pageCtx {
	d := *c
	d.arena = append([]byte(nil), c.arena...)
	d.ends = append([]int(nil), c.ends...)
	return d
}

// canDelta reports whether a record starting in page page (seq seq) may
// be a delta against c.
func (c *pageCtx) canDelta(page int64, seq uint64) bool {
	return c.has && c.page == page && seq > c.seq
}

// appendRecordV4 appends the version-4 record of v to dst: a delta
// against c if delta, else absolute. It leaves c as it is (see note).
// scratch is reused for the body and returned.
func appendRecordV4(dst, scratch []byte, c *pageCtx, v *recView, delta bool) ([]byte, []byte) {
	ms := v.time.UnixMilli() - timeEpochMs
	b := scratch[:0]
	flags := v.qos & 3
	if v.retain {
		flags |= v2Retain
	}
	if len(v.origin) > 0 {
		flags |= v2Origin
	}
	if delta {
		flags |= v4Delta
	}
	b = append(b, flags)
	if delta {
		b = binary.AppendUvarint(b, v.seq-c.seq)
		b = binary.AppendVarint(b, ms-c.ms)
		if i := c.find(v.topic); i >= 0 {
			b = binary.AppendUvarint(b, uint64(i+1))
		} else {
			b = append(b, 0)
			b = binary.AppendUvarint(b, uint64(len(v.topic)))
			b = append(b, v.topic...)
		}
	} else {
		b = binary.AppendUvarint(b, v.seq)
		b = binary.AppendVarint(b, ms)
		b = binary.AppendUvarint(b, uint64(len(v.topic)))
		b = append(b, v.topic...)
	}
	if len(v.origin) > 0 {
		b = binary.AppendUvarint(b, uint64(v.pid))
		b = binary.AppendUvarint(b, uint64(len(v.origin)))
		b = append(b, v.origin...)
	}
	b = append(b, v.payload...)
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	dst = binary.LittleEndian.AppendUint32(dst, checksumV4(b, c))
	return append(dst, b...), b
}

// checksumV4 is the checksum of a version-4 body: CRC32C of the body, for
// a delta record preceded by the previous record's seq (8 bytes LE), so
// that it checks the context too. An absolute record's is the body's.
func checksumV4(b []byte, c *pageCtx) uint32 {
	if len(b) == 0 || b[0]&v4Delta == 0 || c == nil || !c.has {
		return crc32.Checksum(b, castagnoli)
	}
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], c.seq)
	return crc32.Update(crc32.Update(0, castagnoli, s[:]), castagnoli, b)
}

// queuedView parses a queued version-2 record (appendRecord).
func queuedView(rec []byte) recView {
	_, k := binary.Uvarint(rec)
	v, _ := parseBody(segVersion2, rec[k+4:]) // appendRecord made it
	return v
}

var (
	errNoContext = fmt.Errorf("%w: delta record without the records before it in its page", errCorrupt)
	errFlags     = fmt.Errorf("%w: unknown flags", errCorrupt)
	errTopicRef  = fmt.Errorf("%w: topic reference to no topic of the page", errCorrupt)
)

// parseV4 decodes a checked version-4 body that starts in page page. With
// c nil only an absolute record parses; otherwise a delta record is read
// against c, and c is updated on success. The view's slices alias b (or
// c's topics, until c changes).
func parseV4(b []byte, c *pageCtx, page int64) (recView, error) {
	var v recView
	if len(b) < minBodyV2 {
		return v, errFields
	}
	flags := b[0]
	if flags&^(3|v2Retain|v2Origin|v4Delta) != 0 {
		return v, errFlags
	}
	p := 1
	uv := func() (uint64, bool) {
		x, n := binary.Uvarint(b[p:])
		if n <= 0 {
			return 0, false
		}
		p += n
		return x, true
	}
	x, ok := uv()
	if !ok {
		return v, errFields
	}
	d, n := binary.Varint(b[p:])
	if n <= 0 {
		return v, errFields
	}
	p += n
	delta := flags&v4Delta != 0
	var ms int64
	ref := -1
	if delta {
		if c == nil || !c.has || c.page != page {
			return v, errNoContext
		}
		if x == 0 || c.seq+x < c.seq {
			return v, fmt.Errorf("%w: seq delta %d", errCorrupt, x)
		}
		v.seq, ms = c.seq+x, c.ms+d
		r, ok := uv()
		if !ok || r > uint64(len(c.ends)) {
			return v, errTopicRef
		}
		ref = int(r) - 1
	} else {
		v.seq, ms = x, d
	}
	v.time = time.UnixMilli(ms + timeEpochMs)
	if ref < 0 {
		tl, ok := uv()
		if !ok || tl > uint64(len(b)-p) {
			return v, errFields
		}
		v.topic = b[p : p+int(tl)]
		p += int(tl)
	} else {
		v.topic = c.topic(ref)
	}
	v.qos, v.retain = flags&3, flags&v2Retain != 0
	if flags&v2Origin != 0 {
		pid, origin, np, ok := decodeOrigin(b, p)
		if !ok {
			return v, errFields
		}
		v.pid, v.origin, p = pid, origin, np
	}
	v.payload = b[p:]
	if c != nil {
		c.note(page, &v, ms, !delta)
		if ref >= 0 {
			v.topic = c.topic(ref)
		}
	}
	return v, nil
}
