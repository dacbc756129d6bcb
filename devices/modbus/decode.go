package modbus

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Decode turns the raw bytes of r's registers, as they came off the wire
// (2 per register), into its value: raw × scale + offset as float64, or the
// integer as int64 when there is no scale and no offset.
func Decode(r Register, raw []byte) (any, error) {
	if len(raw) != 2*r.words() {
		return nil, fmt.Errorf("%d bytes for %s, want %d", len(raw), r.Type, 2*r.words())
	}
	b := append([]byte(nil), raw...)
	if r.ByteOrder == "little" { // BA: bytes swapped within each register
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	}
	if len(b) == 4 && r.WordOrder == "low_first" {
		b[0], b[1], b[2], b[3] = b[2], b[3], b[0], b[1]
	}
	var iv int64
	var fv float64
	isFloat := false
	switch r.Type {
	case "int16":
		iv = int64(int16(binary.BigEndian.Uint16(b)))
	case "uint16":
		iv = int64(binary.BigEndian.Uint16(b))
	case "int32":
		iv = int64(int32(binary.BigEndian.Uint32(b)))
	case "uint32":
		iv = int64(binary.BigEndian.Uint32(b))
	case "float32":
		f := math.Float32frombits(binary.BigEndian.Uint32(b))
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return nil, fmt.Errorf("float32 %08X is not a number", binary.BigEndian.Uint32(b))
		}
		fv, isFloat = float64(f), true
	default:
		return nil, fmt.Errorf("type %q", r.Type)
	}
	if r.Scale == nil && r.Offset == 0 {
		if isFloat {
			return fv, nil
		}
		return iv, nil
	}
	if !isFloat {
		fv = float64(iv)
	}
	scale := 1.0
	if r.Scale != nil {
		scale = *r.Scale
	}
	// Round away binary noise (215 × 0.1 = 21.500000000000004) at 12
	// significant digits, far beyond any register's resolution.
	v := fv*scale + r.Offset
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, fmt.Errorf("%v × %v + %v is out of range", fv, scale, r.Offset)
	}
	if v != 0 {
		p := math.Pow10(11 - int(math.Floor(math.Log10(math.Abs(v)))))
		if !math.IsInf(p, 0) && p != 0 {
			if rv := math.Round(v*p) / p; !math.IsInf(rv, 0) && !math.IsNaN(rv) {
				v = rv
			}
		}
	}
	return v, nil
}
