package mfrc522

import (
	"bytes"
	"fmt"
	"sync"

	"periph.io/x/conn/v3"
	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/conn/v3/spi"
)

// chip simulates an MFRC522's register map closely enough for periph's
// driver (NXP MFRC522 datasheet rev 3.9, §9 registers, §10 commands), with an
// ISO 14443-A tag in the field that answers REQA, anticollision and SELECT
// (ISO/IEC 14443-3 §6). It is an spi.PortCloser: one SPI transaction is an
// address byte (bit 7 read, bits 6..1 register) followed by data (§8.1.2).
type chip struct {
	mu      sync.Mutex
	regs    [64]byte
	fifo    []byte
	version byte
	rst     *gpiotest.Pin // RST low: hard power-down, the chip does not answer
	irq     *gpiotest.Pin // IRQ output, active low (IRqInv set by the driver)
	irqOn   bool
	uid     []byte // the tag in the field: 4 or 7 bytes; nil when none
	// selected receives the tag's UID each time the reader completes a
	// cascade-level-1 SELECT of it, so tests can await reads.
	selected chan string
}

// Registers the simulation gives meaning to (§9.2).
const (
	rCommand    = 0x01
	rCommIEn    = 0x02
	rCommIrq    = 0x04
	rDivIrq     = 0x05
	rError      = 0x06
	rFIFOData   = 0x09
	rFIFOLevel  = 0x0A
	rControl    = 0x0C
	rBitFraming = 0x0D
	rCRCResultM = 0x21
	rCRCResultL = 0x22
	rVersion    = 0x37
)

func newChip(rst, irq *gpiotest.Pin) *chip {
	c := &chip{version: 0x92, rst: rst, irq: irq, selected: make(chan string, 256)}
	c.softReset()
	return c
}

// softReset puts the registers to their reset values (§9.3).
func (c *chip) softReset() {
	c.regs = [64]byte{}
	for r, v := range map[int]byte{
		0x01: 0x20, 0x02: 0x80, 0x04: 0x14, 0x07: 0x21, 0x0B: 0x08, 0x0C: 0x10,
		0x0E: 0x80, 0x11: 0x3F, 0x14: 0x80, 0x16: 0x10, 0x17: 0x84, 0x18: 0x84,
		0x19: 0x4D, 0x21: 0xFF, 0x22: 0xFF, 0x24: 0x26, 0x26: 0x48, 0x27: 0x88,
		0x28: 0x20, 0x29: 0x20,
	} {
		c.regs[r] = v
	}
	c.fifo = c.fifo[:0]
	c.updateIRQ()
}

func (c *chip) present(uid []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.uid = append([]byte(nil), uid...)
}

func (c *chip) String() string                      { return "mfrc522-sim" }
func (c *chip) Close() error                        { return nil }
func (c *chip) LimitSpeed(f physic.Frequency) error { return nil }
func (c *chip) Duplex() conn.Duplex                 { return conn.Full }
func (c *chip) TxPackets(p []spi.Packet) error      { panic("not used by the driver") }
func (c *chip) Connect(f physic.Frequency, m spi.Mode, bits int) (spi.Conn, error) {
	return c, nil
}

// Tx implements conn.Conn.
func (c *chip) Tx(w, r []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rst.Read() == pgpio.Low {
		for i := range r {
			r[i] = 0
		}
		return nil
	}
	if len(w) < 2 {
		return nil
	}
	reg := int(w[0]>>1) & 0x3F
	if w[0]&0x80 != 0 {
		for i := 1; i < len(w) && i < len(r); i++ {
			r[i] = c.read(reg)
		}
		return nil
	}
	for _, v := range w[1:] {
		c.write(reg, v)
	}
	return nil
}

func (c *chip) read(reg int) byte {
	switch reg {
	case rFIFOData:
		if len(c.fifo) == 0 {
			return 0
		}
		v := c.fifo[0]
		c.fifo = c.fifo[1:]
		return v
	case rFIFOLevel:
		return byte(len(c.fifo))
	case rVersion:
		return c.version
	}
	return c.regs[reg]
}

func (c *chip) write(reg int, v byte) {
	switch reg {
	case rFIFOData:
		if len(c.fifo) < 64 {
			c.fifo = append(c.fifo, v)
		}
	case rFIFOLevel:
		if v&0x80 != 0 { // FlushBuffer
			c.fifo = c.fifo[:0]
		}
	case rCommIrq, rDivIrq: // bit 7 Set1: set or clear the bits marked 1 (§9.3.1.5)
		if v&0x80 != 0 {
			c.regs[reg] |= v & 0x7F
		} else {
			c.regs[reg] &^= v & 0x7F
		}
	case rCommand:
		c.regs[reg] = v
		switch v & 0x0F {
		case 0x0F: // SoftReset
			c.softReset()
		case 0x03: // CalcCRC over the FIFO (§10.3.1.4)
			crc := crcA(c.fifo)
			c.fifo = c.fifo[:0]
			c.regs[rCRCResultL], c.regs[rCRCResultM] = byte(crc), byte(crc>>8)
			c.regs[rDivIrq] |= 0x04 // CRCIRq
		}
	case rBitFraming:
		c.regs[reg] = v &^ 0x80
		if v&0x80 != 0 && c.regs[rCommand]&0x0F == 0x0C { // StartSend during Transceive
			c.transceive(int(v & 0x07))
		}
	case rVersion, rError:
		// read-only
	default:
		c.regs[reg] = v
	}
	c.updateIRQ()
}

// transceive sends the FIFO to the tag and puts its answer in the FIFO.
func (c *chip) transceive(txLastBits int) {
	frame := append([]byte(nil), c.fifo...)
	c.fifo = c.fifo[:0]
	c.regs[rControl] &^= 0x07
	c.regs[rCommIrq] |= 0x40 // TxIRq
	resp := c.tag(frame, txLastBits)
	if resp == nil {
		c.regs[rCommIrq] |= 0x01 // TimerIRq: nobody answered before the timer ran out
		return
	}
	c.fifo = append(c.fifo, resp...)
	c.regs[rCommIrq] |= 0x20 // RxIRq
}

// tag is the PICC's side of ISO/IEC 14443-3 type A.
func (c *chip) tag(f []byte, lastBits int) []byte {
	if c.uid == nil {
		return nil
	}
	double := len(c.uid) == 7
	switch {
	case len(f) == 1 && lastBits == 7 && (f[0] == 0x26 || f[0] == 0x52): // REQA / WUPA
		if double {
			return []byte{0x44, 0x00} // ATQA: double-size UID
		}
		return []byte{0x04, 0x00} // ATQA: single-size UID
	case bytes.Equal(f, []byte{0x93, 0x20}): // ANTICOLLISION, cascade level 1
		return withBCC(c.cl1())
	case len(f) == 9 && f[0] == 0x93 && f[1] == 0x70: // SELECT, cascade level 1
		if crc := crcA(f[:7]); f[7] != byte(crc) || f[8] != byte(crc>>8) || !bytes.Equal(f[2:7], withBCC(c.cl1())) {
			return nil
		}
		select {
		case c.selected <- fmt.Sprintf("%X", c.uid):
		default:
		}
		sak := byte(0x08) // MIFARE Classic 1K, UID complete
		if double {
			sak = 0x04 // cascade bit: UID not complete
		}
		crc := crcA([]byte{sak})
		return []byte{sak, byte(crc), byte(crc >> 8)}
	case bytes.Equal(f, []byte{0x95, 0x20}) && double: // ANTICOLLISION, cascade level 2
		return withBCC(c.uid[3:7])
	}
	return nil
}

func (c *chip) cl1() []byte {
	if len(c.uid) == 7 {
		return []byte{0x88, c.uid[0], c.uid[1], c.uid[2]} // cascade tag CT
	}
	return c.uid
}

func withBCC(b []byte) []byte {
	bcc := byte(0)
	for _, v := range b {
		bcc ^= v
	}
	return append(append([]byte(nil), b...), bcc)
}

// updateIRQ drives the IRQ output (§9.3.1.3/§9.3.1.5): active while an
// enabled interrupt request is set; with IRqInv (CommIEnReg bit 7) active is
// low. Each change to active is a falling edge on the host's input.
func (c *chip) updateIRQ() {
	on := c.regs[rCommIrq]&c.regs[rCommIEn]&0x7F != 0
	if on && !c.irqOn && c.irq != nil {
		select {
		case c.irq.EdgesChan <- pgpio.Low:
		default: // the host's edge queue is full: the edge is lost, as in the kernel
		}
	}
	c.irqOn = on
}

// crcA is the ISO/IEC 14443-3 CRC_A (annex B): polynomial x¹⁶+x¹²+x⁵+1,
// reflected, preset 0x6363; sent low byte first.
func crcA(b []byte) uint16 {
	crc := uint16(0x6363)
	for _, v := range b {
		v ^= byte(crc)
		v ^= v << 4
		crc = crc>>8 ^ uint16(v)<<8 ^ uint16(v)<<3 ^ uint16(v)>>4
	}
	return crc
}
