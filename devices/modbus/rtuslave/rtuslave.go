// Package rtuslave is a small Modbus RTU slave bus for tests: it serves
// Read Coils (01), Read Discrete Inputs (02), Read Holding Registers (03) and
// Read Input Registers (04) for several unit ids on one serial line (a pty
// master), with real CRC-16, exception responses for unknown addresses and
// functions, and silent units for timeouts. (The simonvetter/modbus server
// serves TCP only.)
package rtuslave

import (
	"encoding/binary"
	"io"
	"sync"
)

// CRC16 is the Modbus RTU CRC (polynomial 0xA001 reflected, initial 0xFFFF);
// it goes on the wire low byte first.
func CRC16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// AppendCRC appends the CRC of b, low byte first.
func AppendCRC(b []byte) []byte {
	c := CRC16(b)
	return append(b, byte(c), byte(c>>8))
}

// Unit is one slave's data.
type Unit struct {
	Holding  map[uint16]uint16
	Input    map[uint16]uint16
	Coils    map[uint16]bool
	Discrete map[uint16]bool
	Silent   bool // never answers: the master times out
}

// Bus serves units on one line.
type Bus struct {
	dev   io.ReadWriter
	mu    sync.Mutex
	units map[byte]*Unit
	reqs  int
	bad   int
}

// New returns a bus on dev with the given units.
func New(dev io.ReadWriter, units map[byte]*Unit) *Bus {
	return &Bus{dev: dev, units: units}
}

// Set changes a unit's holding register while serving.
func (b *Bus) Set(unit byte, addr, v uint16) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.units[unit].Holding[addr] = v
}

// Requests is how many well-formed requests arrived, and how many bytes were
// skipped as not part of one.
func (b *Bus) Requests() (ok, skipped int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reqs, b.bad
}

// Serve answers requests until reading dev fails, and returns that error.
// Requests of functions 01–04 are 8 bytes; the bus slides over anything
// whose CRC does not check.
func (b *Bus) Serve() error {
	var buf []byte
	tmp := make([]byte, 256)
	for {
		n, err := b.dev.Read(tmp)
		if err != nil {
			return err
		}
		buf = append(buf, tmp[:n]...)
		for len(buf) >= 8 {
			if CRC16(buf[:6]) != binary.LittleEndian.Uint16(buf[6:8]) {
				buf = buf[1:]
				b.mu.Lock()
				b.bad++
				b.mu.Unlock()
				continue
			}
			resp := b.handle(buf[:6])
			buf = buf[8:]
			if resp != nil {
				if _, err := b.dev.Write(resp); err != nil {
					return err
				}
			}
		}
	}
}

func (b *Bus) handle(req []byte) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reqs++
	u, ok := b.units[req[0]]
	if !ok || u.Silent {
		return nil
	}
	fc := req[1]
	addr := binary.BigEndian.Uint16(req[2:])
	qty := binary.BigEndian.Uint16(req[4:])
	exc := func(code byte) []byte { return AppendCRC([]byte{req[0], fc | 0x80, code}) }
	switch fc {
	case 0x01, 0x02:
		bits := u.Coils
		if fc == 0x02 {
			bits = u.Discrete
		}
		if qty < 1 || qty > 2000 {
			return exc(0x03)
		}
		out := []byte{req[0], fc, byte((qty + 7) / 8)}
		data := make([]byte, (qty+7)/8)
		for i := range qty {
			v, ok := bits[addr+i]
			if !ok {
				return exc(0x02)
			}
			if v {
				data[i/8] |= 1 << (i % 8)
			}
		}
		return AppendCRC(append(out, data...))
	case 0x03, 0x04:
		regs := u.Holding
		if fc == 0x04 {
			regs = u.Input
		}
		if qty < 1 || qty > 125 {
			return exc(0x03)
		}
		out := []byte{req[0], fc, byte(2 * qty)}
		for i := range qty {
			v, ok := regs[addr+i]
			if !ok {
				return exc(0x02) // illegal data address
			}
			out = binary.BigEndian.AppendUint16(out, v)
		}
		return AppendCRC(out)
	}
	return exc(0x01) // illegal function
}
