// Package all links every device driver into the binary. A trimmed build
// drops a line here.
package all

import (
	_ "github.com/edgegw/edgegw/devices/rdm6300" // RDM6300 125 kHz RFID
	_ "github.com/edgegw/edgegw/devices/sim"     // simulated devices
)
