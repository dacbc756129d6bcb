package deadletter

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Watch tells when a request may have arrived in the store's request
// directory: inotify on it, read through the runtime's poller, so a
// gateway with nothing to serve is never woken for it (a one-second poll
// was one of its few wake-ups a second at rest, issue 11).
type Watch struct {
	f *os.File
	c chan struct{}
}

// WatchRequests starts watching the request directory. An error (no
// inotify, or no instance left: fs.inotify.max_user_instances) means the
// caller must poll ServeRequests instead.
func (s *Store) WatchRequests() (*Watch, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("deadletter: inotify: %w", err)
	}
	rd := filepath.Join(s.dir, requestDir)
	if _, err := syscall.InotifyAddWatch(fd, rd, syscall.IN_MOVED_TO|syscall.IN_CLOSE_WRITE); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("deadletter: inotify watch on %s: %w", rd, err)
	}
	// A non-blocking descriptor: os.NewFile puts it in the runtime poller.
	w := &Watch{f: os.NewFile(uintptr(fd), "inotify "+rd), c: make(chan struct{}, 1)}
	go w.run()
	return w, nil
}

func (w *Watch) run() {
	buf := make([]byte, 4096)
	for {
		if _, err := w.f.Read(buf); err != nil {
			// Closed, or an error reading events: C closes and the
			// caller polls.
			close(w.c)
			return
		}
		// One or more events (an overflow too): look.
		select {
		case w.c <- struct{}{}:
		default:
		}
	}
}

// C receives after a file was written or renamed into the request
// directory (several such events may come as one); it is closed once
// the Watch is, or when its events cannot be read.
func (w *Watch) C() <-chan struct{} { return w.c }

// Close stops the watch.
func (w *Watch) Close() error { return w.f.Close() }
