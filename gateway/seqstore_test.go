package gateway

import (
	"os"
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
