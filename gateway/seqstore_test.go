package gateway

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edgegw/edgegw/internal/powerfs"
)

// TestSeqStorePowerCut runs the sequence store on a file system that
// forgets every unsynced write at a power cut: after the cut, in a new boot,
// numbering must go on above every number handed out before it (a gap, never
// a repeat), whatever the number of readings since the start.
func TestSeqStorePowerCut(t *testing.T) {
	if err := powerfs.Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must run the power-cut tests: %v", err)
		}
		t.Skipf("skipping: %v (run as root with /dev/fuse)", err)
	}
	srv, err := powerfs.Mount(powerfs.NewModel(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	cases := []struct {
		name     string
		readings int // in the first boot, before the cut
		cut      powerfs.CutMode
		clean    bool // the first boot stops cleanly before the cut
	}{
		{"cut before any reading", 0, powerfs.CutDrop, false},
		{"cut after a few readings", 7, powerfs.CutDrop, false},
		{"cut after more readings than the skip", 2*powerLossSkip + 123, powerfs.CutDrop, false},
		{"torn cut after many readings", 3*powerLossSkip + 1, powerfs.CutTorn, false},
		{"clean stop, then a cut", 42, powerfs.CutDrop, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			device := "dev" + string(rune('a'+i))
			s, err := openSeqStore(srv.Dir())
			if err != nil {
				t.Fatal(err)
			}
			s.bootID = "00000000-0000-0000-0000-00000000000" + string(rune('a'+i))
			start, _, err := s.open(device)
			if err != nil {
				t.Fatal(err)
			}
			last := start
			for k := 0; k < c.readings; k++ {
				if last, err = s.next(device); err != nil {
					t.Fatal(err)
				}
			}
			if c.clean {
				if err := s.close(); err != nil {
					t.Fatal(err)
				}
			} else {
				for _, sf := range s.files {
					sf.f.Close() // the process dies: no clean flag
				}
				s.lock.release() // and the kernel drops its flock on data_dir/LOCK
			}
			srv.Model.PowerCut(c.cut, nil)
			s2, err := openSeqStore(srv.Dir())
			if err != nil {
				t.Fatal(err)
			}
			s2.bootID = "11111111-0000-0000-0000-00000000000" + string(rune('a'+i))
			resumed, skipped, err := s2.open(device)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.close()
			if resumed < last {
				t.Fatalf("after the cut numbering resumes at %d, but %d was already used", resumed+1, last)
			}
			if c.clean && (resumed != last || skipped) {
				t.Errorf("after a clean stop: resumed at %d (skipped %v), want %d without a skip", resumed, skipped, last)
			}
			if !c.clean && !skipped {
				t.Errorf("after a power cut the skip was not reported")
			}
			if gap := resumed - last; gap > powerLossSkip {
				t.Errorf("the gap after the cut is %d numbers, more than the %d skip", gap, powerLossSkip)
			}
		})
	}
}

func openSeqT(t *testing.T, dataDir, boot string) *seqStore {
	t.Helper()
	s, err := openSeqStore(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	s.bootID = boot
	return s
}

// readingsT hands out n numbers and checks they follow from.
func readingsT(t *testing.T, s *seqStore, from uint64, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		got, err := s.next("door")
		if err != nil {
			t.Fatal(err)
		}
		if got != from+uint64(i) {
			t.Fatalf("reading %d: seq %d, want %d", i, got, from+uint64(i))
		}
	}
}

// TestSeqStoreResume: numbering resumes without a gap after a clean stop,
// after the reserved block after a crash (never a number twice), and the
// file is written once per block, not once per reading.
func TestSeqStoreResume(t *testing.T) {
	const boot1 = "11111111-1111-1111-1111-111111111111"
	const boot2 = "22222222-2222-2222-2222-222222222222"
	for _, tc := range []struct {
		name      string
		clean     bool   // first run stops with close
		boot      string // boot id of the second run
		oldFormat string // a file as edgegw 0.1 left it, instead of a first run
		wantFirst uint64 // first seq of the second run
		skipped   bool
	}{
		{name: "clean stop", clean: true, boot: boot1, wantFirst: 11},
		{name: "clean stop, reboot", clean: true, boot: boot2, wantFirst: 11},
		{name: "kill -9", boot: boot1, wantFirst: seqBlock + 1, skipped: true},
		{name: "power cut", boot: boot2, wantFirst: seqBlock + 1, skipped: true},
		{name: "0.1 file after kill -9", oldFormat: "00000000000000000042 " + boot1 + " 0\n", boot: boot1, wantFirst: 43, skipped: true},
		{name: "0.1 file after power cut", oldFormat: "00000000000000000042 " + boot1 + " 0\n", boot: boot2, wantFirst: 43 + powerLossSkip, skipped: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := t.TempDir()
			path := filepath.Join(dataDir, "seq", "door")
			if tc.oldFormat != "" {
				os.MkdirAll(filepath.Dir(path), 0o750)
				if err := os.WriteFile(path, []byte(tc.oldFormat), 0o640); err != nil {
					t.Fatal(err)
				}
			} else {
				s := openSeqT(t, dataDir, boot1)
				if last, skipped, err := s.open("door"); err != nil || last != 0 || skipped {
					t.Fatalf("first open: %d %v %v", last, skipped, err)
				}
				readingsT(t, s, 1, 2)
				after2, _ := os.ReadFile(path)
				readingsT(t, s, 3, 8)
				after10, _ := os.ReadFile(path)
				if !bytes.Equal(after2, after10) || !strings.HasPrefix(string(after10), "00000000000000001000 ") {
					t.Fatalf("file after 2 readings %q, after 10 %q: want one reservation write", after2, after10)
				}
				if tc.clean {
					if err := s.close(); err != nil {
						t.Fatal(err)
					}
				} else { // the process dies: files stay as written, the flock goes
					for _, sf := range s.files {
						sf.f.Close()
					}
					s.lock.release()
				}
			}
			s := openSeqT(t, dataDir, tc.boot)
			last, skipped, err := s.open("door")
			if err != nil {
				t.Fatal(err)
			}
			if last+1 != tc.wantFirst || skipped != tc.skipped {
				t.Fatalf("resume at %d (skipped %v), want %d (skipped %v)", last+1, skipped, tc.wantFirst, tc.skipped)
			}
			readingsT(t, s, tc.wantFirst, 3)
			s.close()
		})
	}
}

// TestSeqStoreBlocks: crossing a block boundary reserves the next block
// before its first number is used.
func TestSeqStoreBlocks(t *testing.T) {
	dataDir := t.TempDir()
	s := openSeqT(t, dataDir, strings.Repeat("b", 36))
	if _, _, err := s.open("door"); err != nil {
		t.Fatal(err)
	}
	readingsT(t, s, 1, seqBlock+1)
	b, _ := os.ReadFile(filepath.Join(dataDir, "seq", "door"))
	if !strings.HasPrefix(string(b), "00000000000000002000 ") {
		t.Fatalf("file %q after %d readings: want the second block reserved", b, seqBlock+1)
	}
	s.close()
}

// TestSeqStoreConcurrentDevices: devices number their readings at the same
// time (each under its own file lock) while another device is opened; each
// gets 1, 2, 3, … without a gap or a repeat, the numbers survive a clean
// restart, and a reading after close is an error, not a panic.
func TestSeqStoreConcurrentDevices(t *testing.T) {
	dir := t.TempDir()
	s, err := openSeqStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"door", "gate", "temp", "relay"}
	for _, n := range names {
		if _, _, err := s.open(n); err != nil {
			t.Fatal(err)
		}
	}
	const per = 1200 // crosses a block boundary (seqBlock)
	var wg sync.WaitGroup
	errs := make(chan error, len(names)+1)
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= per; i++ {
				got, err := s.next(n)
				if err != nil || got != i {
					errs <- fmt.Errorf("%s: reading %d got seq %d (%v)", n, i, got, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, _, err := s.open("late"); err != nil {
			errs <- err
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.next("door"); err == nil {
		t.Error("next after close: no error")
	}
	s2, err := openSeqStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.close()
	for _, n := range names {
		last, skipped, err := s2.open(n)
		if err != nil || last != per || skipped {
			t.Errorf("%s after a clean restart: last %d skipped %v (%v), want %d", n, last, skipped, err, per)
		}
	}
}
