package outbox

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// Segment file layout. Every version shares the header (integers little
// endian):
//
//	header  : magic "EGWOBX" (6) | version (1) | reserved (1) | first seq (8)
//
// Version 2 (written since 0.2; varints as in encoding/binary):
//
//	record* : body length (uvarint) | CRC32C of body (4, LE) | body
//	body    : seq (uvarint) | milliseconds since 2025-01-01 UTC (varint) |
//	          flags (1: qos in bits 0-1, retain bit 2, origin bit 3) |
//	          [origin pid (uvarint) | origin length (uvarint) | origin] |
//	          topic length (uvarint) | topic | payload
//
// The origin is stored only for QoS 2 (see storedOrigin). A 100-byte
// payload on a 13-byte topic takes 131 bytes (145 in version 1, and 156
// with the origin 0.1 stored for every message).
//
// Version 3 (written since 0.3) holds version-2 records laid out in file
// pages of pageSize bytes: a record no longer than a page never crosses a
// page boundary, and what is left of a page that cannot hold the next
// record is zeros (padding). A commit under CommitInterval writes whole
// pages only: a partly filled last page waits in memory until it fills or
// its oldest record has waited CommitInterval (or a reader waits, or at
// Close), and is then written padded with zeros, so the next commit starts
// on a fresh page. No commit ever rewrites a page holding acknowledged
// records: a torn write after a power cut can damage only the commit in
// progress, whose messages were not yet acknowledged. A zero byte where a
// record's length should be is padding only if the rest of its page is
// zeros too; otherwise it is damage (a zeroed stretch in the middle of a
// page must not hide the records after it). Version-2 segments are read
// by the same rule (a version-2 length is never zero).
//
// Version 4 (written since 0.4) lays records out in pages as version 3
// does, and each page is the context of a compact record:
//
//	record* : body length (uvarint) | CRC32C of body (4, LE) | body
//	body    : flags (1: qos in bits 0-1, retain bit 2, origin bit 3,
//	          delta bit 4; bits 5-7 zero) |
//	          absolute: seq (uvarint) | ms since 2025-01-01 UTC (varint) |
//	                    topic length (uvarint) | topic
//	          delta:    seq - previous seq (uvarint, >= 1) |
//	                    ms - previous ms (varint) |
//	                    topic ref (uvarint: 0 = new, then topic length
//	                    (uvarint) | topic; k >= 1 = the k-th distinct topic
//	                    of the page, the page's first record's being 1) |
//	          [origin pid (uvarint) | origin length (uvarint) | origin] |
//	          payload
//
// The CRC32C of a delta record covers the previous record's seq (8 bytes,
// LE) and then the body, so a record left in a recycled file by an older
// run never passes for the continuation of a page. The first record that
// starts in a page is absolute, every later one
// that starts in the same page is a delta against the record before it
// (a writer may also start a page's context afresh with an absolute
// record). A 100-byte payload on a 13-byte topic takes about 130 bytes as the
// first record of a page and 109 after it (37 records per page, 31 in
// version 3). The cost: a delta record cannot be read without every
// record before it in its page, so damage to a record costs the rest of
// its page (at most 4 KiB); the reader and recovery resynchronise at the
// next absolute record, the next page's first.
//
// Version 1 (edgegw 0.1, still read):
//
//	record* : body length (4) | CRC32C of body (4) | body
//	body    : seq (8) | unix nanos (8) | qos (1) | flags (1) | origin pid (2) |
//	          topic length (2) | origin length (2) | topic | origin | payload
//
// The seq inside the body lets recovery and the reader check that a record
// sits where its seq says it should, and resynchronise after damage.
const (
	segMagic    = "EGWOBX"
	segVersion1 = 1
	segVersion2 = 2
	segVersion3 = 3
	segVersion  = 4 // written
	// pageSize is the unit of a commit and of the record layout of
	// version 3: the page of the page cache and the block of the file
	// system (ext4's default; a smaller block still divides it).
	pageSize      = 4096
	segHeaderSize = 16
	// v1 record header and fixed body part.
	recHeaderSize = 8
	bodyFixedSize = 24
	flagRetain    = 1
	// v2: a body holds at least seq, time, flags and topic length; a
	// record header is at most a 5-byte length and the checksum.
	minBodyV2      = 4
	maxRecHeaderV2 = binary.MaxVarintLen32 + 4
	v2Retain       = 1 << 2
	v2Origin       = 1 << 3
	v4Delta        = 1 << 4
)

// timeEpochMs is 2025-01-01 UTC in Unix milliseconds: version-2 times are
// stored relative to it (5 bytes until 2026, 6 until 2160).
const timeEpochMs = 1735689600000

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a record that fails its length, checksum or seq check.
var errCorrupt = errors.New("corrupt record")

func encodeSegHeader(first uint64) []byte { return encodeSegHeaderV(first, segVersion) }

func encodeSegHeaderV(first uint64, ver byte) []byte {
	b := make([]byte, segHeaderSize)
	copy(b, segMagic)
	b[6] = ver
	binary.LittleEndian.PutUint64(b[8:], first)
	return b
}

// checkSegHeader checks a header against the name's first seq and returns
// its version.
func checkSegHeader(b []byte, first uint64) (byte, error) {
	if len(b) < segHeaderSize || string(b[:6]) != segMagic {
		return 0, errors.New("bad magic")
	}
	if !knownVersion(b[6]) {
		return 0, fmt.Errorf("unknown version %d", b[6])
	}
	if got := binary.LittleEndian.Uint64(b[8:]); got != first {
		return 0, fmt.Errorf("header says first seq %d, name says %d", got, first)
	}
	return b[6], nil
}

func knownVersion(v byte) bool { return v >= segVersion1 && v <= segVersion }

// padBefore is how many zeros go before a record of n bytes appended at
// file offset off: the rest of the page when the record does not fit in
// it (a record longer than a page starts on a page boundary).
func padBefore(off, n int64) int64 {
	room := pageSize - off%pageSize
	if room == pageSize || n <= room {
		return 0
	}
	return room
}

// storedOrigin is the origin kept on disk: only QoS 2 needs it (DUP
// dedupe after a restart, RecentOrigin); for QoS 1 it would be bytes
// written to flash for nothing.
func storedOrigin(m *Message) (string, uint16) {
	if m.QoS != 2 {
		return "", 0
	}
	return m.Origin, m.OriginPID
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func bodySize(m *Message) int {
	origin, pid := storedOrigin(m)
	ms := m.Time.UnixMilli() - timeEpochMs
	n := uvarintLen(m.Seq) + uvarintLen(uint64(ms<<1)^uint64(ms>>63)) + 1 +
		uvarintLen(uint64(len(m.Topic))) + len(m.Topic) + len(m.Payload)
	if origin != "" {
		n += uvarintLen(uint64(pid)) + uvarintLen(uint64(len(origin))) + len(origin)
	}
	return n
}

// recordSize is the encoded size of m on disk (with m.Seq and m.Time set;
// a bound is enough before they are).
func recordSize(m *Message) int {
	n := bodySize(m)
	return uvarintLen(uint64(n)) + 4 + n
}

// appendRecord appends the version-2 record (the form a record waits in
// the committer's queue, its checksum left zero: the committer parses it
// and writes it as version 4, checksummed) of m (Seq and Time set) to dst.
func appendRecord(dst []byte, m *Message) []byte {
	origin, pid := storedOrigin(m)
	n := bodySize(m)
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.AppendUvarint(dst, m.Seq)
	dst = binary.AppendVarint(dst, m.Time.UnixMilli()-timeEpochMs)
	flags := m.QoS & 3
	if m.Retain {
		flags |= v2Retain
	}
	if origin != "" {
		flags |= v2Origin
	}
	dst = append(dst, flags)
	if origin != "" {
		dst = binary.AppendUvarint(dst, uint64(pid))
		dst = binary.AppendUvarint(dst, uint64(len(origin)))
		dst = append(dst, origin...)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Topic)))
	dst = append(dst, m.Topic...)
	dst = append(dst, m.Payload...)
	return dst
}

// recView is a decoded record body; its slices alias the body.
type recView struct {
	seq           uint64
	time          time.Time
	qos           byte
	retain        bool
	pid           uint16
	topic, origin []byte
	payload       []byte
}

var errFields = fmt.Errorf("%w: field lengths exceed body", errCorrupt)

// parseBody decodes a checked body of the given version.
func parseBody(ver byte, b []byte) (recView, error) {
	var v recView
	if ver == segVersion1 {
		if len(b) < bodyFixedSize {
			return v, errFields
		}
		tl := int(binary.LittleEndian.Uint16(b[20:]))
		ol := int(binary.LittleEndian.Uint16(b[22:]))
		if bodyFixedSize+tl+ol > len(b) {
			return v, errFields
		}
		v.seq = binary.LittleEndian.Uint64(b[0:])
		v.time = time.Unix(0, int64(binary.LittleEndian.Uint64(b[8:])))
		v.qos, v.retain, v.pid = b[16], b[17]&flagRetain != 0, binary.LittleEndian.Uint16(b[18:])
		rest := b[bodyFixedSize:]
		v.topic, v.origin, v.payload = rest[:tl], rest[tl:tl+ol], rest[tl+ol:]
		return v, nil
	}
	if ver == segVersion {
		return parseV4(b, nil, 0)
	}
	p := 0
	uv := func() (uint64, bool) {
		x, n := binary.Uvarint(b[p:])
		if n <= 0 {
			return 0, false
		}
		p += n
		return x, true
	}
	var ok bool
	if v.seq, ok = uv(); !ok {
		return v, errFields
	}
	ms, n := binary.Varint(b[p:])
	if n <= 0 || p+n >= len(b) {
		return v, errFields
	}
	p += n
	v.time = time.UnixMilli(ms + timeEpochMs)
	flags := b[p]
	p++
	v.qos, v.retain = flags&3, flags&v2Retain != 0
	if flags&v2Origin != 0 {
		pid, origin, np, ok := decodeOrigin(b, p)
		if !ok {
			return v, errFields
		}
		v.pid, v.origin, p = pid, origin, np
	}
	tl, ok := uv()
	if !ok || tl > uint64(len(b)-p) {
		return v, errFields
	}
	v.topic = b[p : p+int(tl)]
	v.payload = b[p+int(tl):]
	return v, nil
}

// recordReader reads records of one version sequentially from a buffered
// stream.
type recordReader struct {
	r   *bufio.Reader
	ver byte
	off int64 // file offset of the next record
	buf []byte
	hdr [recHeaderSize]byte
	ctx pageCtx // version 4: the context of the page being read
	v   recView // the record nextBody returned last
}

// nextBody reads one record and returns its checked body, valid until the
// next call, and leaves it parsed in rr.v. It returns io.EOF at a clean end, errCorrupt (wrapped) for a
// torn or damaged record, or an I/O error.
func (rr *recordReader) nextBody() ([]byte, error) {
	var n uint64
	var sum uint32
	hlen := 0
	if rr.ver == segVersion1 {
		if _, err := io.ReadFull(rr.r, rr.hdr[:]); err != nil {
			return nil, headerErr(err)
		}
		n, sum, hlen = uint64(binary.LittleEndian.Uint32(rr.hdr[0:])), binary.LittleEndian.Uint32(rr.hdr[4:]), recHeaderSize
		if n < bodyFixedSize {
			return nil, fmt.Errorf("%w: length %d", errCorrupt, n)
		}
	} else {
		for {
			c, err := rr.r.Peek(1)
			if err != nil {
				return nil, headerErr(err)
			}
			if c[0] != 0 {
				break
			}
			if err := rr.skipPadding(); err != nil {
				return nil, err
			}
		}
		for shift := uint(0); ; shift += 7 {
			c, err := rr.r.ReadByte()
			if err != nil {
				if hlen > 0 && err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return nil, headerErr(err)
			}
			hlen++
			if hlen > binary.MaxVarintLen32 {
				return nil, fmt.Errorf("%w: length too long", errCorrupt)
			}
			n |= uint64(c&0x7f) << shift
			if c < 0x80 {
				break
			}
		}
		if _, err := io.ReadFull(rr.r, rr.hdr[:4]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, headerErr(err)
		}
		sum, hlen = binary.LittleEndian.Uint32(rr.hdr[:4]), hlen+4
		if n < minBodyV2 {
			return nil, fmt.Errorf("%w: length %d", errCorrupt, n)
		}
	}
	if n > maxRecordBody {
		return nil, fmt.Errorf("%w: length %d", errCorrupt, n)
	}
	if cap(rr.buf) < int(n) {
		rr.buf = make([]byte, n)
	}
	body := rr.buf[:n]
	if _, err := io.ReadFull(rr.r, body); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: truncated body", errCorrupt)
		}
		return nil, err
	}
	want := uint32(0)
	if rr.ver == segVersion {
		want = checksumV4(body, &rr.ctx)
	} else {
		want = crc32.Checksum(body, castagnoli)
	}
	if want != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	var err error
	if rr.ver == segVersion {
		rr.v, err = parseV4(body, &rr.ctx, rr.off/pageSize)
	} else {
		rr.v, err = parseBody(rr.ver, body)
	}
	if err != nil {
		return nil, err
	}
	rr.off += int64(hlen) + int64(n)
	return body, nil
}

// skipPadding moves past the zeros that end a page, at rr.off: it returns
// io.EOF if the stream ends in them, and errCorrupt (wrapped) if the rest
// of the page is not all zeros (damage, not padding).
func (rr *recordReader) skipPadding() error {
	n := int(pageSize - rr.off%pageSize)
	b, err := rr.r.Peek(n)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return err
	}
	if !allZero(b) {
		return fmt.Errorf("%w: zero length byte in a page that is not padding", errCorrupt)
	}
	if len(b) < n {
		return io.EOF
	}
	_, _ = rr.r.Discard(n)
	rr.off += int64(n)
	return nil
}

func headerErr(err error) error {
	if err == io.EOF {
		return io.EOF
	}
	if err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: truncated header", errCorrupt)
	}
	return err
}

// decodeView makes a Message of a checked record (copying what it keeps).
func decodeView(v recView) Message {
	m := Message{Seq: v.seq, Time: v.time, QoS: v.qos, Retain: v.retain, OriginPID: v.pid, Topic: string(v.topic)}
	if len(v.origin) > 0 {
		m.Origin = string(v.origin)
	}
	m.Payload = append([]byte(nil), v.payload...)
	return m
}

// decodeOrigin reads a stored origin at b[p:] (versions 2 to 4): the
// publisher's packet id and the origin's length as uvarints, then the
// origin; it returns them and the offset after them, or ok false when
// they do not fit in b.
func decodeOrigin(b []byte, p int) (pid uint16, origin []byte, next int, ok bool) {
	id, n := binary.Uvarint(b[p:])
	if n <= 0 || id > 0xffff {
		return 0, nil, p, false
	}
	p += n
	ol, n := binary.Uvarint(b[p:])
	if n <= 0 || ol > uint64(len(b)-p-n) {
		return 0, nil, p, false
	}
	p += n
	return uint16(id), b[p : p+int(ol)], p + int(ol), true
}
