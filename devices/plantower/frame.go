// Package plantower reads Plantower PMS5003 and PMS7003 particulate sensors
// (types "pms5003" and "pms7003") in their default active mode: 9600 8N1, one
// 32-byte frame about every second (PMS5003 datasheet V2.3 §"Appendix I",
// PMS7003 datasheet V2.5 "Transport protocol - Active Mode"):
//
//	0x42 0x4D | frame length (2 bytes) = 28 | 13 data words, big endian | checksum (2 bytes)
//
// where the checksum is the sum of all bytes before it. Data words 1–3 are
// PM1.0, PM2.5 and PM10 in µg/m³ with CF=1 ("standard particle"), 4–6 the same
// under atmospheric environment, 7–12 the number of particles beyond 0.3,
// 0.5, 1.0, 2.5, 5.0 and 10 µm in 0.1 L of air, 13 reserved.
package plantower

import (
	"encoding/binary"

	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/serialport"
)

// FrameLen is the whole frame's size; the length field says 28.
const (
	FrameLen  = 32
	lengthVal = 28
)

// Counter reasons.
const (
	BadChecksum = "bad_checksum" // sum of bytes 0..29 differs from bytes 30..31
	BadLength   = "bad_length"   // frame length field is not 28
	NoiseBytes  = "noise_bytes"  // bytes outside any frame
)

// Units.
const (
	UnitMass  = "µg/m³"
	UnitCount = "/0.1L"
)

// fieldNames are the data words 1–12 in frame order.
var fieldNames = [12]string{
	"pm1_0_cf1", "pm2_5_cf1", "pm10_cf1",
	"pm1_0", "pm2_5", "pm10",
	"particles_0_3um", "particles_0_5um", "particles_1_0um", "particles_2_5um", "particles_5_0um", "particles_10um",
}

// Encode builds the frame a sensor sends for the 13 data words (tests use it
// to play the sensor).
func Encode(words [13]uint16) []byte {
	f := make([]byte, FrameLen)
	f[0], f[1] = 0x42, 0x4D
	binary.BigEndian.PutUint16(f[2:], lengthVal)
	for i, w := range words {
		binary.BigEndian.PutUint16(f[4+2*i:], w)
	}
	binary.BigEndian.PutUint16(f[30:], sum(f[:30]))
	return f
}

func sum(b []byte) uint16 {
	var s uint16
	for _, c := range b {
		s += uint16(c)
	}
	return s
}

// Parser finds frames in the stream. It implements serialport.Parser.
type Parser struct {
	Counts *serialport.Counters
	buf    []byte
}

var _ serialport.Parser = (*Parser)(nil)

// Reset drops a partial frame.
func (p *Parser) Reset() { p.buf = p.buf[:0] }

// Feed implements serialport.Parser.
func (p *Parser) Feed(b []byte, emit func(devices.Reading)) {
	p.buf = append(p.buf, b...)
	i := 0
	var noise uint64
	for {
		// Find the start characters.
		for i < len(p.buf) && p.buf[i] != 0x42 {
			i++
			noise++
		}
		if len(p.buf)-i < 4 {
			break
		}
		if p.buf[i+1] != 0x4D {
			i++
			noise++
			continue
		}
		if binary.BigEndian.Uint16(p.buf[i+2:]) != lengthVal {
			p.Counts.Inc(BadLength)
			i += 2
			continue
		}
		if len(p.buf)-i < FrameLen {
			break
		}
		f := p.buf[i : i+FrameLen]
		if sum(f[:30]) != binary.BigEndian.Uint16(f[30:]) {
			p.Counts.Inc(BadChecksum)
			i += 2 // resync after the start characters
			continue
		}
		r := devices.Reading{Fields: make([]devices.Field, 0, len(fieldNames))}
		for k, name := range fieldNames {
			unit := UnitMass
			if k >= 6 {
				unit = UnitCount
			}
			r.Fields = append(r.Fields, devices.Field{Name: name, Value: int64(binary.BigEndian.Uint16(f[4+2*k:])), Unit: unit})
		}
		emit(r)
		i += FrameLen
	}
	if noise > 0 {
		p.Counts.Add(NoiseBytes, noise)
	}
	p.buf = append(p.buf[:0], p.buf[i:]...)
}
