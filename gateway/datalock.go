package gateway

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// dataLock is an exclusive flock on data_dir/LOCK, held while the gateway
// runs, in every mode: two instances on one data_dir would hand out the
// same sequence numbers (and, with an upstream, share one outbox). The
// kernel drops the lock when the process dies, kill -9 included. The file
// holds the holder's process id, for the message the next one prints.
type dataLock struct{ f *os.File }

func lockDataDir(dataDir string) (*dataLock, error) {
	path := filepath.Join(dataDir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("data_dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(string(bytes.TrimSpace(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf(" (process %d)", pid)
			}
		}
		f.Close()
		return nil, fmt.Errorf("data_dir %s is in use by another edgegw%s: two instances cannot share one data_dir (stop the other one, or give this one its own [gateway] data_dir): flock %s: %w", dataDir, holder, path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dataLock{f: f}, nil
}

func (l *dataLock) release() {
	if l != nil && l.f != nil {
		l.f.Close() // closing the descriptor drops the flock
		l.f = nil
	}
}
