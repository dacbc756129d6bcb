package boards

// rpiHeader is the 40-pin header of every Raspberry Pi since the B+: header
// position → BCM GPIO, with the default alternate function where one is in
// common use.
var rpiHeader = []struct {
	pos  int
	gpio int
	fn   string
}{
	{3, 2, "I2C1_SDA"}, {5, 3, "I2C1_SCL"}, {7, 4, "GPCLK0 / 1-Wire (w1-gpio default)"},
	{8, 14, "UART0_TX"}, {10, 15, "UART0_RX"}, {11, 17, ""}, {12, 18, "PCM_CLK / PWM0"},
	{13, 27, ""}, {15, 22, ""}, {16, 23, ""}, {18, 24, ""},
	{19, 10, "SPI0_MOSI"}, {21, 9, "SPI0_MISO"}, {22, 25, ""}, {23, 11, "SPI0_SCLK"},
	{24, 8, "SPI0_CE0"}, {26, 7, "SPI0_CE1"}, {27, 0, "ID_SD (HAT EEPROM)"}, {28, 1, "ID_SC (HAT EEPROM)"},
	{29, 5, ""}, {31, 6, ""}, {32, 12, "PWM0"}, {33, 13, "PWM1"}, {35, 19, "SPI1_MISO"},
	{36, 16, ""}, {37, 26, ""}, {38, 20, "SPI1_MOSI"}, {40, 21, "SPI1_SCLK"},
}

func rpiPins(chip string) []Pin {
	out := make([]Pin, len(rpiHeader))
	for i, h := range rpiHeader {
		out[i] = Pin{
			Header: "P1_" + itoa(h.pos),
			GPIO:   "GPIO" + itoa(h.gpio),
			Chip:   chip,
			Line:   h.gpio,
			Func:   h.fn,
		}
	}
	return out
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// Serial ports of the BCM283x boards with Bluetooth (Zero W, Zero 2 W, 3, 4).
var rpiBTSerial = []Port{
	{Path: "/dev/serial0", Pins: "TX P1_8, RX P1_10", Note: "the header UART; a link to ttyS0 (mini UART) while Bluetooth holds the PL011, to ttyAMA0 with dtoverlay=disable-bt; needs enable_uart=1"},
	{Path: "/dev/ttyS0", Pins: "TX P1_8, RX P1_10", Note: "mini UART; its baud rate follows the core clock unless core_freq is fixed (enable_uart=1 does that)"},
	{Path: "/dev/ttyAMA0", Pins: "Bluetooth, or TX P1_8, RX P1_10 with dtoverlay=disable-bt or miniuart-bt", Note: "PL011"},
	{Path: "/dev/serial1", Note: "a link to the UART Bluetooth uses"},
}

var rpiI2C = []Port{{Path: "/dev/i2c-1", Pins: "SDA P1_3, SCL P1_5", Note: "dtparam=i2c_arm=on; 1.8 kΩ pull-ups on the board"}}

var rpiSPI = []Port{
	{Path: "/dev/spidev0.0", Pins: "MOSI P1_19, MISO P1_21, SCLK P1_23, CE0 P1_24", Note: "dtparam=spi=on"},
	{Path: "/dev/spidev0.1", Pins: "MOSI P1_19, MISO P1_21, SCLK P1_23, CE1 P1_26", Note: "dtparam=spi=on"},
}

var (
	armv6 = Arch{GOARCH: "arm", GOARM: "6"}
	armv7 = Arch{GOARCH: "arm", GOARM: "7"}
	arm64 = Arch{GOARCH: "arm64"}
)

var profiles = []Board{
	{
		Name:   "rpi-zero-w",
		Title:  "Raspberry Pi Zero W",
		Models: []string{"Raspberry Pi Zero W", "Raspberry Pi Zero"},
		SoC:    "BCM2835 (ARM1176JZF-S, ARMv6)",
		Arch:   []Arch{armv6},
		Serial: rpiBTSerial,
		I2C:    rpiI2C,
		SPI:    rpiSPI,
		Chips:  []Chip{{Name: "gpiochip0", Label: "pinctrl-bcm2835", Lines: 54}},
		Pins:   rpiPins("gpiochip0"),
		Notes:  "ARMv6: only the armv6 binary runs (armv7 and arm64 do not); the Zero (no W) has the same header and no Bluetooth, so serial0 is ttyAMA0.",
	},
	{
		Name:   "rpi-zero-2w",
		Title:  "Raspberry Pi Zero 2 W",
		Models: []string{"Raspberry Pi Zero 2 W"},
		SoC:    "RP3A0 / BCM2710A1 (Cortex-A53)",
		Arch:   []Arch{arm64, armv7},
		Serial: rpiBTSerial,
		I2C:    rpiI2C,
		SPI:    rpiSPI,
		Chips:  []Chip{{Name: "gpiochip0", Label: "pinctrl-bcm2835", Lines: 54}},
		Pins:   rpiPins("gpiochip0"),
		Notes:  "arm64 with a 64-bit OS, armv7 with a 32-bit one; 512 MB RAM.",
	},
	{
		Name:   "rpi3",
		Title:  "Raspberry Pi 3 Model B / B+",
		Models: []string{"Raspberry Pi 3 Model B", "Raspberry Pi 3 Model B Plus", "Raspberry Pi 3 Model B+", "Raspberry Pi 3 Model A Plus", "Raspberry Pi 3 Model A+"},
		SoC:    "BCM2837 / BCM2837B0 (Cortex-A53)",
		Arch:   []Arch{arm64, armv7},
		Serial: rpiBTSerial,
		I2C:    rpiI2C,
		SPI:    rpiSPI,
		Chips: []Chip{
			{Name: "gpiochip0", Label: "pinctrl-bcm2835", Lines: 54},
			{Name: "gpiochip1", Label: "raspberrypi-exp-gpio", Lines: 8, Note: "firmware expander (LEDs, HDMI detect); not on the header"},
		},
		Pins: rpiPins("gpiochip0"),
	},
	{
		Name:   "rpi4",
		Title:  "Raspberry Pi 4 Model B",
		Models: []string{"Raspberry Pi 4 Model B"},
		SoC:    "BCM2711 (Cortex-A72)",
		Arch:   []Arch{arm64, armv7},
		Serial: append(append([]Port{}, rpiBTSerial...),
			Port{Path: "/dev/ttyAMA1", Pins: "uart2: TX P1_27, RX P1_28; uart3: TX P1_7, RX P1_29; uart4: TX P1_24, RX P1_21; uart5: TX P1_32, RX P1_33", Note: "extra PL011s with dtoverlay=uart2..uart5; numbered ttyAMA1.. in the order enabled"},
		),
		I2C: rpiI2C,
		SPI: rpiSPI,
		Chips: []Chip{
			{Name: "gpiochip0", Label: "pinctrl-bcm2711", Lines: 58},
			{Name: "gpiochip1", Label: "raspberrypi-exp-gpio", Lines: 8, Note: "firmware expander; not on the header"},
		},
		Pins: rpiPins("gpiochip0"),
	},
	{
		Name:   "rpi5",
		Title:  "Raspberry Pi 5 Model B",
		Models: []string{"Raspberry Pi 5 Model B"},
		SoC:    "BCM2712 (Cortex-A76) with RP1 I/O controller",
		Arch:   []Arch{arm64, armv7},
		Serial: []Port{
			{Path: "/dev/serial0", Note: "a link to the console UART: ttyAMA10 (debug connector) by default; name /dev/ttyAMA0 for the header"},
			{Path: "/dev/ttyAMA0", Pins: "TX P1_8, RX P1_10", Note: "RP1 UART0, with dtparam=uart0=on; Bluetooth has its own UART on Pi 5"},
			{Path: "/dev/ttyAMA10", Pins: "3-pin debug connector", Note: "BCM2712 debug UART, the default console"},
			{Path: "/dev/ttyAMA1", Pins: "uart1: TX P1_27, RX P1_28; uart2: TX P1_7, RX P1_29; uart3: TX P1_24, RX P1_21; uart4: TX P1_32, RX P1_33", Note: "extra RP1 UARTs with dtoverlay=uart1-pi5..uart4-pi5; numbered ttyAMA1.. in the order enabled"},
		},
		I2C: rpiI2C,
		SPI: rpiSPI,
		Chips: []Chip{
			{Name: "gpiochip0", Label: "pinctrl-rp1", Lines: 54, Note: "the header's GPIO is on RP1, not the SoC: gpiochip0 since Raspberry Pi kernel 6.6.45 (raspberrypi/linux#6144), gpiochip4 before; the SoC's own chips moved to gpiochip10..13"},
		},
		Pins:  rpiPins("gpiochip0"),
		Notes: "The legacy sysfs GPIO numbers are offset (base 571 on 6.6.45+ kernels); use the character device. Memory-mapped BCM283x GPIO does not exist here.",
	},
	{
		Name:   "bbb",
		Title:  "BeagleBone Black",
		Models: []string{"TI AM335x BeagleBone Black", "TI AM335x BeagleBone Black Wireless"},
		SoC:    "TI AM3358 (Cortex-A8)",
		Arch:   []Arch{armv7},
		Serial: []Port{
			{Path: "/dev/ttyS0", Pins: "J1 debug header", Note: "UART0, the console (ttyO0 on 3.8 kernels)"},
			{Path: "/dev/ttyS1", Pins: "TX P9_24, RX P9_26", Note: "UART1 (BB-UART1 overlay); /dev/ttyO1 on 3.8 kernels and as a udev link on BeagleBoard.org images"},
			{Path: "/dev/ttyO1", Pins: "TX P9_24, RX P9_26", Note: "the same UART1 under its old name"},
			{Path: "/dev/ttyS2", Pins: "TX P9_21, RX P9_22", Note: "UART2 (BB-UART2 overlay)"},
			{Path: "/dev/ttyS4", Pins: "TX P9_13, RX P9_11", Note: "UART4 (BB-UART4 overlay)"},
			{Path: "/dev/ttyS5", Pins: "TX P8_37, RX P8_38", Note: "UART5 (BB-UART5 overlay); conflicts with HDMI"},
		},
		I2C: []Port{
			{Path: "/dev/i2c-2", Pins: "SDA P9_20, SCL P9_19", Note: "I2C2, enabled by default (cape EEPROMs live here)"},
			{Path: "/dev/i2c-1", Pins: "SDA P9_18, SCL P9_17", Note: "I2C1 (BB-I2C1 overlay)"},
		},
		SPI: []Port{
			{Path: "/dev/spidev0.0", Pins: "SCLK P9_22, D0 P9_21, D1 P9_18, CS0 P9_17", Note: "SPI0 (BB-SPIDEV0 overlay); spidev1.0 on kernels before 4.14"},
			{Path: "/dev/spidev1.0", Pins: "SCLK P9_31, D0 P9_29, D1 P9_30, CS0 P9_28", Note: "SPI1 (BB-SPIDEV1 overlay; HDMI audio must be off); spidev2.0 before 4.14"},
		},
		Chips: []Chip{
			{Name: "gpiochip0", Label: "gpio-0-31", Lines: 32, Note: "AM335x bank GPIO0; chip numbers follow the bank on BeagleBoard.org kernels"},
			{Name: "gpiochip1", Label: "gpio-32-63", Lines: 32},
			{Name: "gpiochip2", Label: "gpio-64-95", Lines: 32},
			{Name: "gpiochip3", Label: "gpio-96-127", Lines: 32},
		},
		Pins:  bbbPins(),
		Notes: "Pins are multiplexed by device-tree overlays (or config-pin); a header pin is a GPIO only in gpio mode. Line name GPIOn is the kernel number n = 32×bank + offset, as periph's sysfs driver names it.",
	},
	{
		Name:   "orangepi-zero",
		Title:  "Orange Pi Zero (H2+) / Zero LTS",
		Models: []string{"Xunlong Orange Pi Zero", "Xunlong Orange Pi Zero LTS", "Xunlong Orange Pi Zero Lts"},
		SoC:    "Allwinner H2+ (Cortex-A7)",
		Arch:   []Arch{armv7},
		Serial: []Port{
			{Path: "/dev/ttyS0", Pins: "3-pin debug header", Note: "UART0, the console"},
			{Path: "/dev/ttyS1", Pins: "TX P1_8 (PG6), RX P1_10 (PG7)", Note: "UART1 (overlay uart1 in armbianEnv.txt)"},
			{Path: "/dev/ttyS2", Pins: "TX P1_13 (PA0), RX P1_11 (PA1)", Note: "UART2 (overlay uart2)"},
		},
		I2C: []Port{
			{Path: "/dev/i2c-0", Pins: "SDA P1_3 (PA12), SCL P1_5 (PA11)", Note: "TWI0 (overlay i2c0)"},
			{Path: "/dev/i2c-1", Pins: "SDA P1_16 (PA19), SCL P1_18 (PA18)", Note: "TWI1 (overlay i2c1)"},
		},
		SPI: []Port{
			{Path: "/dev/spidev1.0", Pins: "MOSI P1_19 (PA15), MISO P1_21 (PA16), CLK P1_23 (PA14), CS P1_24 (PA13)", Note: "SPI1 (overlay spi-spidev, param_spidev_spi_bus=1); SPI0 is the on-board NOR flash"},
		},
		Chips: []Chip{
			{Name: "gpiochip0", Label: "1c20800.pinctrl", Lines: 224, Note: "ports PA..PG, line = 32×port + n (PA=0, PG=6)"},
			{Name: "gpiochip1", Label: "1f02c00.pinctrl", Lines: 32, Note: "port PL (R_PIO)"},
		},
		Pins:  opiZeroPins(),
		Notes: "The header is 26 pins, numbered like the Pi's P1. Not the Zero Plus (H5) nor the Zero 2/3 (H616/H618): different SoCs and pins.",
	},
}

func bbbPins() []Pin {
	// Header position → kernel GPIO number (32×bank + offset), from the
	// BeagleBone Black System Reference Manual, tables 12 and 13.
	p8 := map[int]int{
		3: 38, 4: 39, 5: 34, 6: 35, 7: 66, 8: 67, 9: 69, 10: 68, 11: 45, 12: 44,
		13: 23, 14: 26, 15: 47, 16: 46, 17: 27, 18: 65, 19: 22, 20: 63, 21: 62, 22: 37,
		23: 36, 24: 33, 25: 32, 26: 61, 27: 86, 28: 88, 29: 87, 30: 89, 31: 10, 32: 11,
		33: 9, 34: 81, 35: 8, 36: 80, 37: 78, 38: 79, 39: 76, 40: 77, 41: 74, 42: 75,
		43: 72, 44: 73, 45: 70, 46: 71,
	}
	p9 := map[int]int{
		11: 30, 12: 60, 13: 31, 14: 50, 15: 48, 16: 51, 17: 5, 18: 4, 19: 13, 20: 12,
		21: 3, 22: 2, 23: 49, 24: 15, 25: 117, 26: 14, 27: 115, 28: 113, 29: 111, 30: 112,
		31: 110, 41: 20, 42: 7,
	}
	var out []Pin
	add := func(hdr string, m map[int]int) {
		for pos := 1; pos <= 46; pos++ {
			n, ok := m[pos]
			if !ok {
				continue
			}
			out = append(out, Pin{
				Header: hdr + "_" + itoa(pos),
				GPIO:   "GPIO" + itoa(n),
				Chip:   "gpiochip" + itoa(n/32),
				Line:   n % 32,
			})
		}
	}
	add("P8", p8)
	add("P9", p9)
	return out
}

func opiZeroPins() []Pin {
	// 26-pin header of the Orange Pi Zero, from its schematic (as periph's
	// orangepi package lays it out).
	hdr := []struct {
		pos  int
		port byte
		n    int
		fn   string
	}{
		{3, 'A', 12, "TWI0_SDA"}, {5, 'A', 11, "TWI0_SCK"}, {7, 'A', 6, "PWM1"}, {8, 'G', 6, "UART1_TX"},
		{10, 'G', 7, "UART1_RX"}, {11, 'A', 1, "UART2_RX"}, {12, 'A', 7, ""}, {13, 'A', 0, "UART2_TX"},
		{15, 'A', 3, "UART2_CTS"}, {16, 'A', 19, "TWI1_SDA"}, {18, 'A', 18, "TWI1_SCK"}, {19, 'A', 15, "SPI1_MOSI"},
		{21, 'A', 16, "SPI1_MISO"}, {22, 'A', 2, "UART2_RTS"}, {23, 'A', 14, "SPI1_CLK"}, {24, 'A', 13, "SPI1_CS"},
		{26, 'A', 10, ""},
	}
	out := make([]Pin, len(hdr))
	for i, h := range hdr {
		out[i] = Pin{
			Header: "P1_" + itoa(h.pos),
			GPIO:   "P" + string(h.port) + itoa(h.n),
			Chip:   "gpiochip0",
			Line:   int(h.port-'A')*32 + h.n,
			Func:   h.fn,
		}
	}
	return out
}
