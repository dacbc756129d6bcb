// Package rdm6300 registers the RDM6300 125 kHz RFID reader (type "rdm6300"):
// 9600 8N1, each tag as STX, 10 ASCII hex data characters, 2 ASCII hex
// checksum characters (XOR of the 5 data bytes), ETX. The framing lives in
// rfidascii, shared with the ID-12/ID-20 readers.
package rdm6300

import (
	"github.com/edgegw/edgegw/devices"
	"github.com/edgegw/edgegw/devices/rfidascii"
)

// Type is the registered device type.
const Type = "rdm6300"

func init() {
	devices.Register(devices.Driver{
		Type:    Type,
		Summary: "RDM6300 125 kHz RFID reader (UART 9600 8N1, STX/ETX ASCII-hex frames)",
		New:     rfidascii.NewDriver(rfidascii.RDM6300),
	})
}

// Frame returns the 14 bytes an RDM6300 sends for a 10-hex-digit uid; tests
// use it to play the reader.
func Frame(uid string) ([]byte, error) { return rfidascii.RDM6300.Encode(uid) }
