// Package pn532 reads ISO 14443A tags (MIFARE Classic, Ultralight, NTAG, …)
// with an NXP PN532 over HSU (its UART, 115200 8N1): wake-up, SAMConfiguration,
// then InListPassiveTarget polling at 106 kbps type A, reporting the 4-, 7- or
// 10-byte UID in upper-case hex. Frame formats and commands are from the PN532
// User Manual UM0701-02: §6.2.1 (frames), §7.2.10 SAMConfiguration, §7.3.1
// RFConfiguration, §7.3.5 InListPassiveTarget.
package pn532

import (
	"bytes"
	"fmt"

	"github.com/edgegw/edgegw/devices/serialport"
)

// Frame identifiers (UM0701 §6.2.1.1).
const (
	TFIHost  = 0xD4 // host controller → PN532
	TFIPN532 = 0xD5 // PN532 → host controller
)

// Commands used by the driver (UM0701 §7).
const (
	CmdGetFirmwareVersion  = 0x02
	CmdSAMConfiguration    = 0x14
	CmdRFConfiguration     = 0x32
	CmdInListPassiveTarget = 0x4A
)

// Fixed frames (UM0701 §6.2.1.3–6.2.1.5).
var (
	ACK        = []byte{0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00}
	NACK       = []byte{0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00}
	ErrorFrame = []byte{0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00} // syntax error / application-level error
	// WakeUp is sent before the first command over HSU: 0x55 0x55 then
	// zeros, long enough for the PN532 to leave power-down (UM0701 §7.2.11,
	// HSU wake-up condition).
	WakeUp = []byte{0x55, 0x55, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}
)

// Encode wraps TFI+data (data[0] is the TFI) in a normal information frame,
// or an extended one past 255 bytes: PREAMBLE 00 FF LEN LCS data DCS POSTAMBLE.
func Encode(data []byte) []byte {
	var sum byte
	for _, b := range data {
		sum += b
	}
	out := []byte{0x00, 0x00, 0xFF}
	if n := len(data); n <= 255 {
		out = append(out, byte(n), byte(-n))
	} else {
		hi, lo := byte(n>>8), byte(n)
		out = append(out, 0xFF, 0xFF, hi, lo, -(hi + lo))
	}
	out = append(out, data...)
	return append(out, -sum, 0x00)
}

// Command is the frame for command code cmd with its parameters.
func Command(cmd byte, params ...byte) []byte {
	return Encode(append([]byte{TFIHost, cmd}, params...))
}

// Kind is the kind of a received frame.
type Kind int

// Frame kinds.
const (
	KindInfo  Kind = iota // normal or extended information frame
	KindACK               // ACK
	KindNACK              // NACK
	KindError             // error frame (data 0x7F)
)

// Frame is one decoded frame.
type Frame struct {
	Kind Kind
	Data []byte // TFI and PD0…PDn of an information frame
}

func (f Frame) String() string {
	switch f.Kind {
	case KindACK:
		return "ACK"
	case KindNACK:
		return "NACK"
	case KindError:
		return "error frame"
	}
	return fmt.Sprintf("frame % X", f.Data)
}

// Counter reasons of the frame decoder.
const (
	BadLCS   = "bad_lcs"   // length checksum wrong
	BadDCS   = "bad_dcs"   // data checksum wrong
	BadFrame = "bad_frame" // zero length or malformed extended header
)

// Decoder finds frames in the bytes a PN532 (or, for a simulator, a host)
// sends. Bytes outside frames (preambles, postambles, wake-up 0x55s, noise)
// are skipped.
type Decoder struct {
	Counts *serialport.Counters
	buf    []byte
}

// Feed appends received bytes.
func (d *Decoder) Feed(b []byte) {
	d.buf = append(d.buf, b...)
	if len(d.buf) > 1<<16 { // a PN532 frame is at most ~265 bytes
		d.buf = append(d.buf[:0], d.buf[len(d.buf)-300:]...)
	}
}

// Reset drops buffered bytes.
func (d *Decoder) Reset() { d.buf = d.buf[:0] }

var startCode = []byte{0x00, 0xFF}

// Next returns the next whole frame, or false when more bytes are needed.
func (d *Decoder) Next() (Frame, bool) {
	for {
		i := bytes.Index(d.buf, startCode)
		if i < 0 {
			if n := len(d.buf); n > 0 && d.buf[n-1] == 0x00 {
				d.buf = append(d.buf[:0], 0x00) // keep a possible half start code
			} else {
				d.buf = d.buf[:0]
			}
			return Frame{}, false
		}
		b := d.buf[i+2:]
		if len(b) < 2 {
			d.buf = d.buf[i:]
			return Frame{}, false
		}
		ln, lcs := b[0], b[1]
		switch {
		case ln == 0x00 && lcs == 0xFF:
			d.buf = d.buf[i+4:]
			return Frame{Kind: KindACK}, true
		case ln == 0xFF && lcs == 0x00:
			d.buf = d.buf[i+4:]
			return Frame{Kind: KindNACK}, true
		case ln == 0xFF && lcs == 0xFF: // extended frame: LENM LENL LCS
			if len(b) < 5 {
				d.buf = d.buf[i:]
				return Frame{}, false
			}
			hi, lo, xl := b[2], b[3], b[4]
			if hi+lo+xl != 0 {
				d.Counts.Inc(BadLCS)
				d.buf = d.buf[i+2:]
				continue
			}
			n := int(hi)<<8 | int(lo)
			if f, ok, more := d.body(i, 7, n); more {
				return Frame{}, false
			} else if ok {
				return f, true
			}
		default:
			if ln+lcs != 0 {
				d.Counts.Inc(BadLCS)
				d.buf = d.buf[i+2:]
				continue
			}
			if f, ok, more := d.body(i, 4, int(ln)); more {
				return Frame{}, false
			} else if ok {
				return f, true
			}
		}
	}
}

// body checks the n data bytes and DCS that start hdr bytes after index i.
func (d *Decoder) body(i, hdr, n int) (f Frame, ok, more bool) {
	if n == 0 {
		d.Counts.Inc(BadFrame)
		d.buf = d.buf[i+2:]
		return Frame{}, false, false
	}
	start := i + hdr
	if len(d.buf) < start+n+1 {
		d.buf = d.buf[i:]
		return Frame{}, false, true
	}
	data := d.buf[start : start+n]
	var sum byte
	for _, c := range data {
		sum += c
	}
	if sum+d.buf[start+n] != 0 {
		d.Counts.Inc(BadDCS)
		d.buf = d.buf[i+2:]
		return Frame{}, false, false
	}
	data = bytes.Clone(data)
	d.buf = d.buf[start+n+1:]
	if n == 1 && data[0] == 0x7F {
		return Frame{Kind: KindError}, true, false
	}
	return Frame{Kind: KindInfo, Data: data}, true, false
}
