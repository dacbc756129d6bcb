// Package sockio gives a TCP connection reads and writes that do not wake
// the Go runtime's system monitor.
//
// Every read or write a *net.TCPConn makes goes through syscall.Read or
// syscall.Write, which tell the scheduler that the goroutine is entering a
// system call that might block. When the process was idle (every P idle),
// that wakes sysmon out of its deep sleep, and sysmon then spins through
// one or more 20 µs sleeps before it sleeps deeply again: at 200 msg/s a
// bridged message costs about two such wake-ups, 4 of its 7.6 context
// switches (perf sched_switch, 2,000 messages). A read or write on a
// non-blocking socket never blocks, so it needs none of that: Conn makes
// them as raw system calls and waits for readiness through the runtime's
// network poller, as net does, so deadlines, Close and the poller behave
// exactly as for the net.Conn it wraps.
package sockio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a *net.TCPConn whose Read and Write are raw system calls.
type Conn struct {
	*net.TCPConn
	raw syscall.RawConn

	rmu  sync.Mutex // one Read at a time: rp, rn, rerr are its state
	rp   []byte
	rn   int
	rerr error
	rfn  func(uintptr) bool

	wmu  sync.Mutex // one Write at a time: wp, wn, werr
	wp   []byte
	wn   int
	werr error
	wfn  func(uintptr) bool
	tfn  func(uintptr) bool
}

// Wrap returns c as a Conn when it is a *net.TCPConn, else c itself.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	s := &Conn{TCPConn: tc, raw: raw}
	s.rfn, s.wfn, s.tfn = s.readFD, s.writeFD, s.tryFD
	return s
}

// Read reads into p as net.Conn's Read does.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rp, c.rn, c.rerr = p, 0, nil
	err := c.raw.Read(c.rfn)
	n, rerr := c.rn, c.rerr
	c.rp = nil
	if err != nil {
		return n, c.opErr("read", err)
	}
	if rerr != nil {
		return n, c.opErr("read", os.NewSyscallError("read", rerr))
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c *Conn) readFD(fd uintptr) bool {
	n, errno, done := rawIO(syscall.SYS_READ, fd, c.rp)
	c.rn = n
	if errno != 0 {
		c.rerr = errno
	}
	return done
}

// rawIO makes one read or write (trap) of p on fd as a raw system call,
// again after EINTR. done is false when the socket is not ready (EAGAIN):
// the caller's RawConn then waits for it in the poller.
func rawIO(trap, fd uintptr, p []byte) (n int, errno syscall.Errno, done bool) {
	for {
		r, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			return int(r), 0, true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return 0, 0, false
		default:
			return 0, e, true
		}
	}
}

// Write writes all of p as net.Conn's Write does.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	done := 0
	for done < len(p) {
		c.wp, c.wn, c.werr = p[done:], 0, nil
		err := c.raw.Write(c.wfn)
		done += c.wn
		werr := c.werr
		c.wp = nil
		if err != nil {
			return done, c.opErr("write", err)
		}
		if werr != nil {
			return done, c.opErr("write", os.NewSyscallError("write", werr))
		}
	}
	return done, nil
}

func (c *Conn) writeFD(fd uintptr) bool {
	if len(c.wp) == 0 {
		return true
	}
	n, errno, done := rawIO(syscall.SYS_WRITE, fd, c.wp)
	c.wn = n
	if errno != 0 {
		c.werr = errno
	}
	return done
}

// TryWrite writes what the socket takes of p now, without waiting, and
// reports how much that was: 0 when the socket's buffer is full, on an
// error (the next Write reports it), or while a Write is in progress.
func (c *Conn) TryWrite(p []byte) int {
	if !c.wmu.TryLock() {
		return 0
	}
	defer c.wmu.Unlock()
	c.wp, c.wn, c.werr = p, 0, nil
	_ = c.raw.Write(c.tfn)
	c.wp = nil
	return c.wn
}

func (c *Conn) tryFD(fd uintptr) bool {
	c.writeFD(fd)
	return true
}

// opErr wraps err as net's own Read and Write do: a *net.OpError, so that
// errors.Is(err, net.ErrClosed) and a deadline's Timeout() hold as before.
func (c *Conn) opErr(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err // the raw connection's "raw-read" / "raw-write"
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Listener wraps every connection ln accepts.
type Listener struct{ net.Listener }

// Accept waits for the next connection and returns it wrapped.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
