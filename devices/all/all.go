// Package all links every device driver into the binary. A trimmed build
// drops a line here.
package all

import (
	_ "github.com/edgegw/edgegw/devices/bme280"    // BME280/BMP280 over I2C
	_ "github.com/edgegw/edgegw/devices/ds18b20"   // DS18B20 1-Wire probes (w1 sysfs)
	_ "github.com/edgegw/edgegw/devices/gpio"      // gpio_in, gpio_out
	_ "github.com/edgegw/edgegw/devices/lines"     // generic line-oriented serial sensors
	_ "github.com/edgegw/edgegw/devices/mfrc522"   // MFRC522 RFID over SPI
	_ "github.com/edgegw/edgegw/devices/modbus"    // Modbus RTU master
	_ "github.com/edgegw/edgegw/devices/nmea"      // NMEA 0183 GPS
	_ "github.com/edgegw/edgegw/devices/plantower" // pms5003, pms7003
	_ "github.com/edgegw/edgegw/devices/pn532"     // PN532 NFC over HSU
	_ "github.com/edgegw/edgegw/devices/rdm6300"   // RDM6300 125 kHz RFID
	_ "github.com/edgegw/edgegw/devices/rfidascii" // id12, id20
	_ "github.com/edgegw/edgegw/devices/sim"       // simulated devices
	_ "github.com/edgegw/edgegw/devices/wiegand"   // Wiegand 26/34
)
