package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// loopFS is an ext4 file system on its own loop device, mounted where a
// bridging process keeps its data, so that the device's write counter is
// that process's flash wear, journal included. /proc/PID/io undercounts
// it about fourfold (it sees neither the journal nor metadata).
type loopFS struct {
	img, dir string
	dev      string // loopN, the name under /sys/block
}

// loopImageSize is the size of each file system: room for a link-down
// minute at saturation on either bridge.
const loopImageSize = "512M"

// mountLoopExt4 makes dir an ext4 mount of a fresh sparse image beside it.
// mkfs.ext4 runs with its defaults except that it initialises the inode
// tables and the journal itself: with the default lazy init the kernel's
// ext4lazyinit thread zeroes them after mount, writes no bridge caused.
func mountLoopExt4(dir string) (*loopFS, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: the flash-wear table needs root (mount -o loop)")
	}
	img := filepath.Clean(dir) + ".ext4"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	steps := [][]string{
		{"truncate", "-s", loopImageSize, img},
		{"mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", img},
		{"mount", "-o", "loop", img, dir},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			os.Remove(img)
			return nil, fmt.Errorf("bench: %s: %w: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	out, err := exec.Command("findmnt", "-n", "-o", "SOURCE", "--target", dir).Output()
	src := strings.TrimSpace(string(out))
	if err != nil || !strings.HasPrefix(src, "/dev/loop") {
		l := &loopFS{img: img, dir: dir}
		l.close()
		return nil, fmt.Errorf("bench: %s is not on a loop device after mount (findmnt: %q, %v)", dir, src, err)
	}
	return &loopFS{img: img, dir: dir, dev: filepath.Base(src)}, nil
}

// close unmounts (the loop device goes with it) and removes the image.
func (l *loopFS) close() {
	for i := 0; i < 50; i++ { // busy while a killed process's files close
		if err := unix.Unmount(l.dir, 0); err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	os.Remove(l.img)
}

// written syncs the file system (this one only: syncfs, not sync, so the
// other bridges' page caches are left alone) and returns the bytes its
// block device has written since it was set up.
func (l *loopFS) written() (int64, error) {
	f, err := os.Open(l.dir)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	err = unix.Syncfs(int(f.Fd()))
	f.Close()
	if err != nil {
		return 0, fmt.Errorf("bench: syncfs %s: %w", l.dir, err)
	}
	b, err := os.ReadFile("/sys/block/" + l.dev + "/stat")
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	return sectorsWritten(string(b))
}

// sectorsWritten parses /sys/block/DEV/stat: the 7th field is sectors
// written, always in 512-byte units whatever the device's block size
// (Documentation/block/stat.rst).
func sectorsWritten(stat string) (int64, error) {
	f := strings.Fields(stat)
	if len(f) < 7 {
		return 0, fmt.Errorf("bench: block stat has %d fields, want at least 7: %q", len(f), stat)
	}
	n, err := strconv.ParseInt(f[6], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench: block stat field 7 (sectors written): %w", err)
	}
	return n * 512, nil
}
