// Package pn532sim plays a PN532 on the test side of a pty: it answers the
// host's frames with ACKs and responses byte-exact to UM0701, and presents
// the tags (or faults) a test queues. Drivers' tests and gateway-level tests
// use it.
package pn532sim

import (
	"io"
	"sync"

	"github.com/edgegw/edgegw/devices/pn532"
	"github.com/edgegw/edgegw/devices/serialport"
)

// Event is what the simulated PN532 does for one InListPassiveTarget.
type Event struct {
	Tag     *pn532.Target // the tag in the field; nil: none (NbTg = 0)
	Silent  bool          // answer nothing at all (no ACK, no response)
	Corrupt bool          // ACK, then the response with a wrong DCS
	Error   bool          // ACK, then an error frame
	Noise   []byte        // bytes sent before the ACK
}

// Sim is a simulated PN532.
type Sim struct {
	dev io.ReadWriter

	mu       sync.Mutex
	events   []Event
	commands [][]byte
	polled   chan struct{}
}

// New returns a PN532 talking over dev (the pty master).
func New(dev io.ReadWriter) *Sim {
	return &Sim{dev: dev, polled: make(chan struct{}, 1024)}
}

// Present queues events, one per coming InListPassiveTarget.
func (s *Sim) Present(ev ...Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, ev...)
}

// Pending is how many queued events have not been played yet.
func (s *Sim) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

// Polled receives once per InListPassiveTarget answered from an empty queue.
func (s *Sim) Polled() <-chan struct{} { return s.polled }

// Commands returns the data (TFI first) of every host frame received.
func (s *Sim) Commands() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.commands...)
}

// Serve answers until reading dev fails (the test closes it) and returns
// that error.
func (s *Sim) Serve() error {
	dec := pn532.Decoder{Counts: new(serialport.Counters)}
	buf := make([]byte, 256)
	for {
		n, err := s.dev.Read(buf)
		if err != nil {
			return err
		}
		dec.Feed(buf[:n])
		for {
			f, ok := dec.Next()
			if !ok {
				break
			}
			if f.Kind != pn532.KindInfo || len(f.Data) < 2 || f.Data[0] != pn532.TFIHost {
				continue
			}
			if err := s.answer(f.Data); err != nil {
				return err
			}
		}
	}
}

func (s *Sim) answer(cmd []byte) error {
	s.mu.Lock()
	s.commands = append(s.commands, cmd)
	s.mu.Unlock()
	var resp []byte
	switch cmd[1] {
	case pn532.CmdGetFirmwareVersion: // IC PN532, firmware 1.6, supports ISO/IEC 14443 A/B and 18092
		resp = []byte{pn532.TFIPN532, 0x03, 0x32, 0x01, 0x06, 0x07}
	case pn532.CmdInListPassiveTarget:
		return s.poll()
	default: // SAMConfiguration, RFConfiguration, …: empty response
		resp = []byte{pn532.TFIPN532, cmd[1] + 1}
	}
	return s.write(pn532.ACK, pn532.Encode(resp))
}

func (s *Sim) poll() error {
	s.mu.Lock()
	var ev Event
	empty := len(s.events) == 0
	if !empty {
		ev, s.events = s.events[0], s.events[1:]
	}
	s.mu.Unlock()
	if empty {
		select {
		case s.polled <- struct{}{}:
		default:
		}
	}
	if ev.Silent {
		return nil
	}
	out := append([]byte(nil), ev.Noise...)
	out = append(out, pn532.ACK...)
	switch {
	case ev.Error:
		out = append(out, pn532.ErrorFrame...)
	case ev.Corrupt:
		f := pn532.Encode(pn532.InListResponse(ev.Tag))
		f[len(f)-2]++
		out = append(out, f...)
	default:
		out = append(out, pn532.Encode(pn532.InListResponse(ev.Tag))...)
	}
	return s.write(out)
}

func (s *Sim) write(parts ...[]byte) error {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	_, err := s.dev.Write(out)
	return err
}
