package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

// trimResident gives back what start-up left resident and will not use
// again: the heap garbage of loading the configuration, the certificates
// and the TLS handshake (debug.FreeOSMemory), and the pages of the
// executable's code and read-only data that the kernel mapped in while
// starting. The kernel maps file pages around every page fault (and the
// whole binary is usually in the page cache right after it was read), so a
// freshly started gateway has most of its 10 MB binary resident, though it
// runs a small part of it once started. madvise(MADV_DONTNEED) on those
// read-only, file-backed mappings drops them from the process; the pages
// stay in the page cache, and a page used again comes back with a minor
// fault (no read from the card). MADV_RANDOM first, so that the kernel
// brings back fewer neighbours with each page used again (measured on an
// idle gateway: 7.6 MB of the binary resident again without it, 6.7 MB
// with it). Writable mappings are never touched, nor is a position-
// independent executable's (a PIE's relocated read-only data are private
// copies that madvise would throw away). It returns the resident KiB
// before and after.
func trimResident() (before, after int, err error) {
	before = residentKB()
	debug.FreeOSMemory()
	exe, err := os.Executable()
	if err != nil {
		return before, before, fmt.Errorf("memory trim: %w", err)
	}
	if pie, err := isPIE(exe); err != nil || pie {
		return before, residentKB(), err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return before, before, fmt.Errorf("memory trim: %w", err)
	}
	defer f.Close()
	type span struct{ lo, hi uintptr }
	var spans []span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-00452000 r-xp 00000000 08:02 173521 /usr/bin/edgegw
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[5] != exe || strings.Contains(fs[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fs[0], "-")
		if !ok {
			continue
		}
		l, err1 := strconv.ParseUint(lo, 16, 64)
		h, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || h <= l {
			continue
		}
		spans = append(spans, span{uintptr(l), uintptr(h)})
	}
	if err := sc.Err(); err != nil {
		return before, before, fmt.Errorf("memory trim: /proc/self/maps: %w", err)
	}
	for _, s := range spans {
		// A hint only: without it the trim still works, less well.
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, s.lo, s.hi-s.lo, syscall.MADV_RANDOM)
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, s.lo, s.hi-s.lo, syscall.MADV_DONTNEED); e != 0 {
			return before, residentKB(), fmt.Errorf("memory trim: madvise %#x-%#x: %w", s.lo, s.hi, e)
		}
	}
	return before, residentKB(), nil
}

// isPIE says whether the ELF file at path is position independent
// (e_type ET_DYN), read from its header: our release builds are static
// and not, but a packager may build with -buildmode=pie.
func isPIE(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("memory trim: %w", err)
	}
	defer f.Close()
	var h [18]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return false, fmt.Errorf("memory trim: %s: %w", path, err)
	}
	if string(h[:4]) != "\x7fELF" {
		return false, fmt.Errorf("memory trim: %s is not an ELF file", path)
	}
	var etype uint16
	if h[5] == 2 { // big endian
		etype = uint16(h[16])<<8 | uint16(h[17])
	} else {
		etype = uint16(h[17])<<8 | uint16(h[16])
	}
	return etype == 3, nil
}

// residentKB is the process's resident set in KiB (VmRSS: the second
// field of /proc/self/statm, in pages), or 0.
func residentKB() int {
	var buf [128]byte
	n := readStatm(buf[:])
	fs := strings.Fields(string(buf[:n]))
	if len(fs) < 2 {
		return 0
	}
	pages, err := strconv.Atoi(fs[1])
	if err != nil {
		return 0
	}
	return pages * os.Getpagesize() / 1024
}

// statm is /proc/self/statm, opened once: the idle check reads it every
// second, and an open, read and close each second would each wake the
// runtime's sysmon in an idle process (see cpuTime).
var statm struct {
	sync.Mutex
	tried bool
	fd    int // -1 when it cannot be opened
}

// readStatm reads /proc/self/statm into b with pread(2) as a raw system
// call (a procfs read never blocks), and returns the bytes read; 0 when
// it cannot be read.
func readStatm(b []byte) int {
	statm.Lock()
	defer statm.Unlock()
	if !statm.tried {
		statm.tried = true
		fd, err := syscall.Open("/proc/self/statm", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			fd = -1
		}
		statm.fd = fd
	}
	if statm.fd < 0 {
		return 0
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_PREAD64, uintptr(statm.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	if e != 0 {
		return 0
	}
	return int(n)
}

// logTrim runs trimResident, logs what it gave back and returns the
// resident KiB after it.
func logTrim(log *slog.Logger) int {
	before, after, err := trimResident()
	if err != nil {
		log.Debug("memory not trimmed", "error", err)
		return after
	}
	log.Debug("resident memory given back", "rss_kib_before", before, "rss_kib_after", after)
	return after
}
