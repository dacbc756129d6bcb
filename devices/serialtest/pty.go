// Package serialtest helps tests play a serial device on a real
// pseudo-terminal: the driver opens the slave path like a UART, the test
// writes the device's bytes into the master and reads what the driver sends.
package serialtest

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// NewPTY opens a pseudo-terminal whose slave is in raw mode (no echo, no line
// editing, no CR/LF translation, 8 bits) and returns the slave's path for the
// driver and the master for the test. The master supports SetReadDeadline
// and a Close unblocks a pending Read. The helper keeps a slave descriptor
// open too, so bytes written before the driver opens the port are kept and
// the master never sees EIO between two opens. Both are closed at cleanup.
func NewPTY(t testing.TB) (path string, dev *os.File) {
	t.Helper()
	p, err := openRaw()
	if err != nil {
		t.Fatalf("serialtest: %v", err)
	}
	t.Cleanup(p.close)
	return p.path, p.master
}

type rawPTY struct {
	path          string
	master, slave *os.File
	once          sync.Once
}

func openRaw() (*rawPTY, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open pty: %w", err)
	}
	if err := MakeRaw(s); err != nil {
		m.Close()
		s.Close()
		return nil, err
	}
	// pty.Open left the master in blocking mode (it called Fd). A
	// non-blocking duplicate joins Go's poller, so Close unblocks a pending
	// Read and SetReadDeadline works.
	// Close-on-exec: a child process (the edgegw binary in e2e tests) must
	// not inherit the master, or closing it here would not unplug anything.
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	m.Close()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("dup pty master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		s.Close()
		return nil, fmt.Errorf("pty master non-blocking: %w", err)
	}
	return &rawPTY{path: s.Name(), master: os.NewFile(uintptr(fd), "/dev/ptmx"), slave: s}, nil
}

func (p *rawPTY) close() {
	p.once.Do(func() {
		p.master.Close()
		p.slave.Close()
	})
}

// MakeRaw puts a terminal in raw mode, like cfmakeraw(3).
func MakeRaw(f *os.File) error {
	fd := int(f.Fd())
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get termios of %s: %w", f.Name(), err)
	}
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB
	tio.Cflag |= unix.CS8
	tio.Cc[unix.VMIN] = 1
	tio.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, tio); err != nil {
		return fmt.Errorf("set termios of %s: %w", f.Name(), err)
	}
	return nil
}

// WriteSplit writes data in chunks of random size (1 to 64 bytes), pausing a
// few microseconds now and then as a UART would, so the reader sees frames
// split at random points.
func WriteSplit(w io.Writer, data []byte, rng *rand.Rand) error {
	for len(data) > 0 {
		n := 1 + rng.IntN(64)
		if n > len(data) {
			n = len(data)
		}
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond) // line pacing, not synchronisation
		}
	}
	return nil
}

// Plug is a serial device that can be unplugged and plugged back in: its
// Path is a symlink (like /dev/serial/by-id/usb-…) to the slave of the
// current pty. Unplug closes the pty (the driver's reads fail as with a USB
// adapter pulled out); Replug makes a new pty and re-points the symlink.
type Plug struct {
	// Path is the stable symlink the driver opens.
	Path string

	t   testing.TB
	mu  sync.Mutex
	cur *rawPTY
}

// NewPlug creates a plugged-in device under a fresh symlink in a temp dir.
func NewPlug(t testing.TB) *Plug {
	t.Helper()
	pl := &Plug{Path: filepath.Join(t.TempDir(), "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"), t: t}
	pl.Replug()
	t.Cleanup(pl.Unplug)
	return pl
}

// Dev returns the master of the current pty (nil while unplugged).
func (pl *Plug) Dev() *os.File {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.cur == nil {
		return nil
	}
	return pl.cur.master
}

// Target returns the /dev/pts path the symlink points to now.
func (pl *Plug) Target() string {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.cur == nil {
		return ""
	}
	return pl.cur.path
}

// Unplug closes the current pty and removes the symlink, as udev does.
func (pl *Plug) Unplug() {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.cur != nil {
		pl.cur.close()
		pl.cur = nil
	}
	os.Remove(pl.Path)
}

// Replug unplugs if needed, then opens a new pty and points Path at it
// (atomically, through a rename). It returns the new master.
func (pl *Plug) Replug() *os.File {
	pl.t.Helper()
	pl.Unplug()
	p, err := openRaw()
	if err != nil {
		pl.t.Fatalf("serialtest: replug: %v", err)
	}
	tmp := pl.Path + ".new"
	os.Remove(tmp)
	if err := os.Symlink(p.path, tmp); err != nil {
		p.close()
		pl.t.Fatalf("serialtest: replug: %v", err)
	}
	if err := os.Rename(tmp, pl.Path); err != nil {
		p.close()
		pl.t.Fatalf("serialtest: replug: %v", err)
	}
	pl.mu.Lock()
	pl.cur = p
	pl.mu.Unlock()
	return p.master
}
