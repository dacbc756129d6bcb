package wiegand

import (
	"errors"
	"fmt"
)

// Card is a decoded Wiegand frame.
type Card struct {
	Bits     int    // frame length: 26 or 34
	Facility uint32 // facility (site) code
	Number   uint32 // card number
	// UID is the data bits between the parity bits in hex, upper case: 6
	// digits for 26-bit frames (facility and card), 8 for 34-bit ones.
	UID string
}

// Decoding errors, told apart so the driver counts them by reason.
var (
	ErrLength = errors.New("wiegand: unsupported frame length")
	ErrParity = errors.New("wiegand: parity error")
)

// Decode checks and decodes a frame given as bits in the order received
// (each 0 or 1). Supported are the 26-bit format (HID H10301: even parity
// over bits 1–12, 8-bit facility, 16-bit card, odd parity over bits 13–24,
// counting data bits from 1) and the common 34-bit format (even parity over
// the first 16 data bits, 16-bit facility, 16-bit card, odd parity over the
// last 16).
func Decode(bits []uint8) (Card, error) {
	var facBits, numBits int
	switch len(bits) {
	case 26:
		facBits, numBits = 8, 16
	case 34:
		facBits, numBits = 16, 16
	default:
		return Card{}, fmt.Errorf("%w: %d bits (want 26 or 34)", ErrLength, len(bits))
	}
	n := len(bits)
	half := (n - 2) / 2
	// Leading parity bit makes the first half (with it) even.
	if ones(bits[0:1+half])%2 != 0 {
		return Card{}, fmt.Errorf("%w: even parity over the first %d data bits of a %d-bit frame", ErrParity, half, n)
	}
	// Trailing parity bit makes the second half (with it) odd.
	if ones(bits[1+half:n])%2 != 1 {
		return Card{}, fmt.Errorf("%w: odd parity over the last %d data bits of a %d-bit frame", ErrParity, half, n)
	}
	data := bits[1 : n-1]
	c := Card{
		Bits:     n,
		Facility: uint32(value(data[:facBits])),
		Number:   uint32(value(data[facBits : facBits+numBits])),
	}
	c.UID = fmt.Sprintf("%0*X", len(data)/4, value(data))
	return c, nil
}

// Encode builds a valid frame of n bits (26 or 34) for a facility and card
// number; it exists for tests and simulators.
func Encode(n int, facility, number uint32) ([]uint8, error) {
	var facBits int
	switch n {
	case 26:
		facBits = 8
	case 34:
		facBits = 16
	default:
		return nil, fmt.Errorf("%w: %d bits", ErrLength, n)
	}
	if facility >= 1<<facBits || number >= 1<<16 {
		return nil, fmt.Errorf("wiegand: facility %d or card %d does not fit a %d-bit frame", facility, number, n)
	}
	bits := make([]uint8, n)
	put := func(at, width int, v uint32) {
		for i := 0; i < width; i++ {
			bits[at+i] = uint8(v >> (width - 1 - i) & 1)
		}
	}
	put(1, facBits, facility)
	put(1+facBits, 16, number)
	half := (n - 2) / 2
	bits[0] = uint8(ones(bits[1:1+half]) % 2)
	bits[n-1] = uint8(1 - ones(bits[1+half:n-1])%2)
	return bits, nil
}

func ones(b []uint8) int {
	n := 0
	for _, v := range b {
		n += int(v)
	}
	return n
}

func value(b []uint8) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<1 | uint64(x)
	}
	return v
}
