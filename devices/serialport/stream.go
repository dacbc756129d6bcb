package serialport

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/edgegw/edgegw/devices"
)

// Parser turns the bytes of a listening device into readings. Feed may be
// handed any split of the stream (one byte, half a frame, three frames) and
// must count and skip what is bad. Reset drops a partial frame; Stream calls
// it when the port is (re)opened.
type Parser interface {
	Feed(p []byte, emit func(devices.Reading))
	Reset()
}

// Stream is a Device for a device that only talks: it opens the port, feeds
// what it reads to the Parser, and passes readings on, suppressing repeated
// UIDs within the Dedupe window.
type Stream struct {
	Port   Config
	Parser Parser
	Counts *Counters        // must be the Parser's counters, so Counters shows both
	Dedupe *devices.Deduper // nil or zero window: no suppression
	Logger *slog.Logger     // nil: slog.Default()
	// Desc describes the readings (devices.Describer).
	Desc devices.Description
}

var (
	_ devices.Device  = (*Stream)(nil)
	_ devices.Counter = (*Stream)(nil)
)

// Describe implements devices.Describer.
func (s *Stream) Describe() devices.Description { return s.Desc }

// Counters implements devices.Counter.
func (s *Stream) Counters() devices.Stats { return s.Counts.Stats() }

// Run implements devices.Device: it returns nil when ctx is cancelled and an
// error naming the port when the port cannot be opened or fails.
func (s *Stream) Run(ctx context.Context, emit func(devices.Reading)) error {
	p, err := Open(s.Port)
	if err != nil {
		s.Counts.Inc("open_failures")
		return err
	}
	s.logger().Debug("serial port open", "port", s.Port.Port, "baud", s.Port.Baud)
	s.Parser.Reset()
	out := func(r devices.Reading) {
		if r.UID != "" && s.Dedupe != nil && s.Dedupe.Seen(r.UID) {
			s.Counts.Inc("duplicates_suppressed")
			return
		}
		emit(r)
	}
	return ReadAll(ctx, p, s.Port.Port, func(b []byte) { s.Parser.Feed(b, out) })
}

func (s *Stream) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// ReadAll reads p until ctx is cancelled (then it returns nil) or a read fails
// (then it returns an error naming the port), handing every chunk to fn. It
// closes p before returning in both cases. A cancelled ctx closes the port
// from a watcher goroutine, which unblocks a pending read at once.
func ReadAll(ctx context.Context, p io.ReadCloser, name string, fn func([]byte)) error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			p.Close()
		case <-done:
		}
	}()
	defer func() {
		close(done)
		wg.Wait()
		p.Close()
	}()
	buf := make([]byte, 512)
	for {
		n, err := p.Read(buf)
		if n > 0 {
			fn(buf[:n])
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("serial port %s: read: %w (port vanished: unplugged or powered down?)", name, err)
		}
	}
}
