// Package loopfs gives tests a real, small ext4 file system of their own: an
// image file attached to a loop device and mounted, so that a test can count
// the bytes that reach the block device (journal included), fill the file
// system up, or remount it read-only. It needs root and the e2fsprogs and
// util-linux tools; without root a test is skipped (failed when CI=true).
package loopfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FS is one mounted loop ext4.
type FS struct {
	// Dir is the mount point.
	Dir string
	// Dev is the loop device, e.g. /dev/loop3.
	Dev string
	t   testing.TB
}

// Mount makes an ext4 image of size bytes (default mkfs options, like a
// Pi's root file system), attaches it to a free loop device and mounts it;
// t.Cleanup unmounts and detaches it.
func Mount(t testing.TB, size int64) *FS {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("loopfs: a loop-mounted ext4 needs root, and CI runs as root")
		}
		t.Skip("loopfs: skipped: a loop-mounted ext4 needs root (run the test as root)")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("loopfs: %s not found (install e2fsprogs, util-linux and mount): %v", tool, err)
		}
	}
	base := t.TempDir()
	img := filepath.Join(base, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatalf("loopfs: %v", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		t.Fatalf("loopfs: %v", err)
	}
	f.Close()
	// 4 KiB blocks as on a real card (mkfs picks 1 KiB for small images);
	// inode tables and journal zeroed now, not by a background thread that
	// would write while a test counts.
	run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", img)
	dev := strings.TrimSpace(run(t, "losetup", "--find", "--show", img))
	fs := &FS{Dir: filepath.Join(base, "mnt"), Dev: dev, t: t}
	if err := os.Mkdir(fs.Dir, 0o755); err != nil {
		t.Fatalf("loopfs: %v", err)
	}
	t.Cleanup(func() {
		exec.Command("umount", fs.Dir).Run()
		exec.Command("losetup", "-d", dev).Run()
	})
	run(t, "mount", "-t", "ext4", dev, fs.Dir)
	return fs
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("loopfs: %s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// WrittenBytes returns the bytes written to the block device since it was
// attached (sectors written, field 7 of /sys/block/loopN/stat, times 512).
// Call Sync first to count what the page cache still holds.
func (fs *FS) WrittenBytes() uint64 {
	fs.t.Helper()
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(fs.Dev), "stat"))
	if err != nil {
		fs.t.Fatalf("loopfs: %v", err)
	}
	fields := strings.Fields(string(b))
	if len(fields) < 7 {
		fs.t.Fatalf("loopfs: %s/stat has %d fields, want at least 7", fs.Dev, len(fields))
	}
	n, err := strconv.ParseUint(fields[6], 10, 64)
	if err != nil {
		fs.t.Fatalf("loopfs: %s/stat field 7: %v", fs.Dev, err)
	}
	return n * 512
}

// Sync writes back everything the file system holds in memory (syncfs),
// journal included.
func (fs *FS) Sync() {
	fs.t.Helper()
	d, err := os.Open(fs.Dir)
	if err != nil {
		fs.t.Fatalf("loopfs: %v", err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		fs.t.Fatalf("loopfs: syncfs %s: %v", fs.Dir, err)
	}
}

// Remount remounts the file system read-only (ro) or read-write.
func (fs *FS) Remount(ro bool) {
	fs.t.Helper()
	mode := "rw"
	if ro {
		mode = "ro"
	}
	run(fs.t, "mount", "-o", "remount,"+mode, fs.Dir)
}

// String names the mount for messages.
func (fs *FS) String() string { return fmt.Sprintf("%s on %s", fs.Dev, fs.Dir) }
