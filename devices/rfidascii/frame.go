// Package rfidascii reads 125 kHz RFID readers that send each tag as an
// ASCII-hex frame between STX (0x02) and ETX (0x03): the RDM6300 and the ID
// Innovations ID-2/ID-12/ID-20 family. It registers the types id12 and id20;
// the rdm6300 package registers rdm6300 with the same parser.
//
// Frame (ID-12/ID-20 datasheet "ASCII output format", RDM6300 datasheet):
//
//	STX | 10 ASCII hex data | 2 ASCII hex checksum | trailer | ETX
//
// where the checksum is the XOR of the 5 data bytes and the trailer is empty
// for the RDM6300 and CR LF for the ID Innovations readers.
package rfidascii

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
)

// Frame delimiters.
const (
	STX = 0x02
	ETX = 0x03
)

// Format is one reader family's frame layout.
type Format struct {
	// Type is the registered device type.
	Type string
	// Trailer is what comes between the checksum and ETX.
	Trailer string
}

// The formats of the supported readers.
var (
	RDM6300 = Format{Type: "rdm6300"}
	ID12    = Format{Type: "id12", Trailer: "\r\n"}
	ID20    = Format{Type: "id20", Trailer: "\r\n"}
)

// bodyLen is the length between STX and ETX.
func (f Format) bodyLen() int { return 12 + len(f.Trailer) }

// Encode returns the frame a reader of format f sends for a 10-hex-digit uid
// (the checksum computed). Tests use it to play a reader.
func (f Format) Encode(uid string) ([]byte, error) {
	d, err := hex.DecodeString(uid)
	if err != nil || len(d) != 5 {
		return nil, fmt.Errorf("rfidascii: uid %q is not 10 hex digits", uid)
	}
	var x byte
	for _, b := range d {
		x ^= b
	}
	out := []byte{STX}
	out = append(out, strings.ToUpper(uid)...)
	out = append(out, fmt.Sprintf("%02X", x)...)
	out = append(out, f.Trailer...)
	return append(out, ETX), nil
}

// Counter reasons.
const (
	BadChecksum = "bad_checksum" // well-formed frame whose checksum does not match
	BadFrame    = "bad_frame"    // wrong length, non-hex digit, wrong trailer, cut short by a new STX
	NoiseBytes  = "noise_bytes"  // bytes outside any frame
)

// Parser finds frames in a byte stream. It implements serialport.Parser.
type Parser struct {
	Format Format
	Counts *serialport.Counters

	in  bool
	buf []byte
}

var _ serialport.Parser = (*Parser)(nil)

// NewParser returns a parser counting into c.
func NewParser(f Format, c *serialport.Counters) *Parser {
	return &Parser{Format: f, Counts: c, buf: make([]byte, 0, 16)}
}

// Reset drops a partial frame.
func (p *Parser) Reset() { p.in, p.buf = false, p.buf[:0] }

// Feed implements serialport.Parser.
func (p *Parser) Feed(b []byte, emit func(devices.Reading)) {
	var noise uint64
	for _, c := range b {
		switch {
		case c == STX:
			if p.in {
				p.Counts.Inc(BadFrame) // the previous frame was cut short
			}
			p.in, p.buf = true, p.buf[:0]
		case !p.in:
			noise++
		case c == ETX:
			p.in = false
			p.finish(emit)
		default:
			p.buf = append(p.buf, c)
			if len(p.buf) > p.Format.bodyLen() {
				p.Counts.Inc(BadFrame) // too long: no ETX where it belongs
				p.Reset()
			}
		}
	}
	if noise > 0 {
		p.Counts.Add(NoiseBytes, noise)
	}
}

func (p *Parser) finish(emit func(devices.Reading)) {
	body := p.buf
	p.buf = p.buf[:0]
	if len(body) != p.Format.bodyLen() || string(body[12:]) != p.Format.Trailer {
		p.Counts.Inc(BadFrame)
		return
	}
	var d [6]byte
	if _, err := hex.Decode(d[:], body[:12]); err != nil {
		p.Counts.Inc(BadFrame)
		return
	}
	if d[0]^d[1]^d[2]^d[3]^d[4] != d[5] {
		p.Counts.Inc(BadChecksum)
		return
	}
	emit(devices.Reading{UID: strings.ToUpper(string(body[:10]))})
}
