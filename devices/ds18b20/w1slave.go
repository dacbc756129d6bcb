package ds18b20

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sample is one parsed w1_slave file.
type Sample struct {
	Scratchpad [9]byte
	MilliC     int64 // the kernel's t= value, m°C
}

// Reasons a w1_slave file is refused, told apart so the driver counts them.
var (
	ErrCRC        = errors.New("ds18b20: CRC mismatch")
	ErrNoResponse = errors.New("ds18b20: probe did not answer (scratchpad all zero)")
	ErrFormat     = errors.New("ds18b20: unexpected w1_slave format")
)

// ParseW1Slave parses the two lines the kernel's w1_therm driver writes:
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
//
// It refuses a read the kernel marked NO, and checks the CRC again itself
// (Maxim CRC-8 over the first 8 bytes), so a line garbled after the kernel's
// check is refused too.
func ParseW1Slave(b []byte) (Sample, error) {
	var s Sample
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return s, fmt.Errorf("%w: %d lines, want 2", ErrFormat, len(lines))
	}
	l1, l2 := strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
	hexPart, verdict, ok := strings.Cut(l1, ": crc=")
	if !ok {
		return s, fmt.Errorf("%w: no \"crc=\" in %q", ErrFormat, l1)
	}
	fields := strings.Fields(hexPart)
	if len(fields) != 9 {
		return s, fmt.Errorf("%w: %d scratchpad bytes, want 9", ErrFormat, len(fields))
	}
	for i, f := range fields {
		v, err := strconv.ParseUint(f, 16, 8)
		if err != nil {
			return s, fmt.Errorf("%w: byte %d %q", ErrFormat, i, f)
		}
		s.Scratchpad[i] = byte(v)
	}
	vf := strings.Fields(verdict)
	if len(vf) != 2 {
		return s, fmt.Errorf("%w: crc verdict %q", ErrFormat, verdict)
	}
	if vf[1] != "YES" {
		return s, fmt.Errorf("%w: the kernel says %s %s", ErrCRC, vf[0], vf[1])
	}
	if s.Scratchpad == ([9]byte{}) {
		return s, ErrNoResponse
	}
	if c := CRC8(s.Scratchpad[:8]); c != s.Scratchpad[8] {
		return s, fmt.Errorf("%w: computed %02x, scratchpad says %02x", ErrCRC, c, s.Scratchpad[8])
	}
	_, t, ok := strings.Cut(l2, "t=")
	if !ok {
		return s, fmt.Errorf("%w: no \"t=\" in %q", ErrFormat, l2)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil {
		return s, fmt.Errorf("%w: t=%q", ErrFormat, t)
	}
	s.MilliC = v
	return s, nil
}

// CRC8 is the Dallas/Maxim 1-Wire CRC (x⁸ + x⁵ + x⁴ + 1, reflected), as in
// Maxim application note 27.
func CRC8(b []byte) byte {
	var crc byte
	for _, v := range b {
		for i := 0; i < 8; i++ {
			mix := (crc ^ v) & 1
			crc >>= 1
			if mix != 0 {
				crc ^= 0x8C
			}
			v >>= 1
		}
	}
	return crc
}

// IsPowerOnValue reports whether the sample is the DS18B20's power-on reset
// value, +85 °C (0x0550, datasheet table "Temperature/Data Relationship"):
// what the register holds when no conversion ran, e.g. after a brown-out of a
// parasitically powered probe.
func (s Sample) IsPowerOnValue() bool {
	return s.MilliC == 85000 && s.Scratchpad[0] == 0x50 && s.Scratchpad[1] == 0x05
}
