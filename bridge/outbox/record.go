package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// Segment file layout (all integers little endian):
//
//	header  : magic "EGWOBX" (6) | version (1) | reserved (1) | first seq (8)
//	record* : body length (4) | CRC32C of body (4) | body
//	body    : seq (8) | unix nanos (8) | qos (1) | flags (1) | origin pid (2) |
//	          topic length (2) | origin length (2) | topic | origin | payload
//
// The seq inside the body lets recovery and the reader check that a record
// sits where its seq says it should.
const (
	segMagic      = "EGWOBX"
	segVersion    = 1
	segHeaderSize = 16
	recHeaderSize = 8
	bodyFixedSize = 24
	flagRetain    = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a record that fails its length, checksum or seq check.
var errCorrupt = errors.New("corrupt record")

func encodeSegHeader(first uint64) []byte {
	b := make([]byte, segHeaderSize)
	copy(b, segMagic)
	b[6] = segVersion
	binary.LittleEndian.PutUint64(b[8:], first)
	return b
}

func checkSegHeader(b []byte, first uint64) error {
	if len(b) < segHeaderSize || string(b[:6]) != segMagic {
		return errors.New("bad magic")
	}
	if b[6] != segVersion {
		return fmt.Errorf("unknown version %d", b[6])
	}
	if got := binary.LittleEndian.Uint64(b[8:]); got != first {
		return fmt.Errorf("header says first seq %d, name says %d", got, first)
	}
	return nil
}

// recordSize is the encoded size of m on disk.
func recordSize(m *Message) int {
	return recHeaderSize + bodyFixedSize + len(m.Topic) + len(m.Origin) + len(m.Payload)
}

// appendRecord appends the encoded record of m (with m.Seq set) to dst.
func appendRecord(dst []byte, m *Message) []byte {
	n := bodyFixedSize + len(m.Topic) + len(m.Origin) + len(m.Payload)
	start := len(dst)
	dst = append(dst, make([]byte, recHeaderSize+bodyFixedSize)...)
	h := dst[start:]
	binary.LittleEndian.PutUint32(h[0:], uint32(n))
	b := h[recHeaderSize:]
	binary.LittleEndian.PutUint64(b[0:], m.Seq)
	binary.LittleEndian.PutUint64(b[8:], uint64(m.Time.UnixNano()))
	b[16] = m.QoS
	if m.Retain {
		b[17] = flagRetain
	}
	binary.LittleEndian.PutUint16(b[18:], m.OriginPID)
	binary.LittleEndian.PutUint16(b[20:], uint16(len(m.Topic)))
	binary.LittleEndian.PutUint16(b[22:], uint16(len(m.Origin)))
	dst = append(dst, m.Topic...)
	dst = append(dst, m.Origin...)
	dst = append(dst, m.Payload...)
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+recHeaderSize:], castagnoli))
	return dst
}

// recordReader reads records sequentially from a buffered stream.
type recordReader struct {
	r   io.Reader
	off int64 // file offset of the next record
	buf []byte
	hdr [recHeaderSize]byte
}

// nextBody reads one record and returns its checked body, valid until the
// next call. It returns io.EOF at a clean end, errCorrupt (wrapped) for a
// torn or damaged record, or an I/O error.
func (rr *recordReader) nextBody() ([]byte, error) {
	if _, err := io.ReadFull(rr.r, rr.hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("%w: truncated header", errCorrupt)
		}
		return nil, err
	}
	n := binary.LittleEndian.Uint32(rr.hdr[0:])
	sum := binary.LittleEndian.Uint32(rr.hdr[4:])
	if n < bodyFixedSize || n > maxRecordBody {
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
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	if bodyFixedSize+int(binary.LittleEndian.Uint16(body[20:]))+int(binary.LittleEndian.Uint16(body[22:])) > len(body) {
		return nil, fmt.Errorf("%w: field lengths exceed body", errCorrupt)
	}
	rr.off += int64(recHeaderSize + int(n))
	return body, nil
}

func decodeBody(b []byte) (Message, error) {
	tl := int(binary.LittleEndian.Uint16(b[20:]))
	ol := int(binary.LittleEndian.Uint16(b[22:]))
	if bodyFixedSize+tl+ol > len(b) {
		return Message{}, fmt.Errorf("%w: field lengths exceed body", errCorrupt)
	}
	m := Message{
		Seq:       binary.LittleEndian.Uint64(b[0:]),
		Time:      time.Unix(0, int64(binary.LittleEndian.Uint64(b[8:]))),
		QoS:       b[16],
		Retain:    b[17]&flagRetain != 0,
		OriginPID: binary.LittleEndian.Uint16(b[18:]),
	}
	rest := b[bodyFixedSize:]
	m.Topic = string(rest[:tl])
	if ol > 0 {
		m.Origin = string(rest[tl : tl+ol])
	}
	m.Payload = append([]byte(nil), rest[tl+ol:]...)
	return m, nil
}
