package main

import (
	"errors"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSectorsWritten(t *testing.T) {
	for _, c := range []struct {
		name, stat string
		want       int64
		err        string
	}{
		// Real lines from this machine's /sys/block/loop0/stat, before and
		// after a 40 KiB write with fsync.
		{"fresh", "      54        0     2100        3        1        0        2        0        0        4        3        0        0        0        0        1        0\n", 2 * 512, ""},
		{"after write", "      59        0     2110        3       12        8      116        1        0        4        6        0        0        0        0        4        1\n", 116 * 512, ""},
		// Kernels before 4.18 print 11 fields; field 7 is the same.
		{"old kernel", "1 2 3 4 5 6 7 8 9 10 11", 7 * 512, ""},
		{"short", "1 2 3 4 5 6", 0, "6 fields"},
		{"not a number", "1 2 3 4 5 6 x 8", 0, "field 7"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := sectorsWritten(c.stat)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("= %d, %v; want %d", got, err, c.want)
			}
		})
	}
}

func TestCPUControllerMount(t *testing.T) {
	// This machine (cgroup v1 with a unified hierarchy that has no
	// controllers), a pure v2 machine, and one with no cpu controller.
	v1 := `tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
`
	v1joined := "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0\n"
	v2 := "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n"
	controllers := map[string]string{
		"/sys/fs/cgroup/unified/cgroup.controllers": "\n",
		"/sys/fs/cgroup/cgroup.controllers":         "cpuset cpu io memory hugetlb pids rdma misc\n",
	}
	read := func(p string) ([]byte, error) {
		if s, ok := controllers[p]; ok {
			return []byte(s), nil
		}
		return nil, os.ErrNotExist
	}
	for _, c := range []struct {
		name, mounts string
		version      int
		root         string
	}{
		{"v1 beside an empty unified hierarchy", v1, 1, "/sys/fs/cgroup/cpu"},
		{"v1 cpu,cpuacct joined", v1joined, 1, "/sys/fs/cgroup/cpu,cpuacct"},
		{"v2", v2, 2, "/sys/fs/cgroup"},
		{"none", "cgroup /sys/fs/cgroup/cpuacct cgroup rw,cpuacct 0 0\n", 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, root, err := cpuControllerMount(c.mounts, read)
			if c.version == 0 {
				if err == nil || !strings.Contains(err.Error(), "cpu controller") {
					t.Fatalf("= %d %q %v, want an error naming the cpu controller", v, root, err)
				}
				return
			}
			if err != nil || v != c.version || root != c.root {
				t.Fatalf("= %d %q %v; want %d %q", v, root, err, c.version, c.root)
			}
		})
	}
}

func TestWearCell(t *testing.T) {
	res := &results{v: map[string]map[string][]float64{}, na: map[string]string{kEdgegwDisk: "n/a (key unknown)"}}
	res.add(0, kEdgegwDflt, figures{"wear.up.200": 170, "wear.up.200.rate": 199, "wear.down.sat": 1.1, "wear.down.sat.rate": 41000}, wearMetrics)
	res.add(0, kMosqAuto, figures{"wear.down.200": 12493, "wear.down.200.rate": 120, "wear.down.sat": 10823300, "wear.down.sat.rate": 0.1}, wearMetrics)
	for _, c := range []struct{ kind, col, want string }{
		// 170 B/B × 200 msg/s × 100 B × 86,400 s: the 294 GB/day.
		{kEdgegwDflt, "up.200", "170 (293.8 GB/day)"},
		{kEdgegwDflt, "down.sat", "1.10 at 41.0k msg/s"},
		{kEdgegwDflt, "up.20", "—"},
		{kEdgegwDisk, "up.20", "n/a (key unknown)"},
		{kMosqAuto, "down.200", "12.5k (21587.9 GB/day), only 120 msg/s"},
		{kMosqAuto, "down.sat", "10823.3k at 0.1 msg/s"},
	} {
		if got := wearCell(res, c.kind, c.col); got != c.want {
			t.Errorf("wearCell(%s, %s) = %q, want %q", c.kind, c.col, got, c.want)
		}
	}
	if g := gbPerDay(0.1, 20); math.Abs(g-0.01728) > 1e-9 {
		t.Errorf("gbPerDay(0.1, 20) = %v", g)
	}
}

// needRoot skips a test that needs root, except in CI, where it must run.
func needRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s needs root; CI runs make test as root", what)
		}
		t.Skipf("%s needs root (mount -o loop, cgroups); run as root to test it", what)
	}
}

// TestLoopFSCountsWrites: the wear counter sees a write once it is synced,
// journal and all, and nothing while the file system is left alone.
func TestLoopFSCountsWrites(t *testing.T) {
	needRoot(t, "the loop-mounted ext4")
	if testing.Short() {
		t.Skip("mounts a file system")
	}
	l, err := mountLoopExt4(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	w0, err := l.written()
	if err != nil {
		t.Fatal(err)
	}
	if w1, _ := l.written(); w1 != w0 {
		t.Errorf("an idle file system wrote %d bytes between two syncs (lazy init not off?)", w1-w0)
	}
	const size = 256 << 10
	if err := os.WriteFile(filepath.Join(l.dir, "f"), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	w2, err := l.written()
	if err != nil {
		t.Fatal(err)
	}
	// The data, plus the journal's copy of the metadata, plus little else.
	if d := w2 - w0; d < size || d > size+256<<10 {
		t.Errorf("a %d-byte file cost %d bytes on the device, want [%d, %d]", size, d, size, size+256<<10)
	}
	l.close()
	if out, _ := exec.Command("findmnt", "-n", l.dir).Output(); len(out) > 0 {
		t.Errorf("still mounted after close: %s", out)
	}
	if _, err := os.Stat(l.img); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("image %s left behind: %v", l.img, err)
	}
}

// TestCPUCapLimits: a busy process in the capped cgroup gets about its
// quota of a core and no more.
func TestCPUCapLimits(t *testing.T) {
	needRoot(t, "the cgroup CPU cap")
	if testing.Short() {
		t.Skip("burns a quarter of a core for two seconds")
	}
	cg, err := newCPUCap("edgegw-bench-test-"+strings.ReplaceAll(t.Name(), "/", "-"), slowCap)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		cg.close()
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		cg.close()
		if _, err := os.Stat(cg.dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left behind", cg.dir)
		}
	}()
	if err := cg.add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	c0, t0 := cpuSeconds(cmd.Process.Pid), time.Now()
	time.Sleep(2 * time.Second) // the span over which the share is measured
	share := (cpuSeconds(cmd.Process.Pid) - c0) / time.Since(t0).Seconds()
	// Uncapped, the loop takes a whole core (less on a busy machine, so
	// only the upper bound is sharp).
	if share > 0.35 {
		t.Errorf("capped to %d %% of a core, the loop used %.0f %%", slowCap, share*100)
	}
	if share < 0.05 {
		t.Errorf("the loop used only %.1f %% of a core: not running?", share*100)
	}
}

// TestChartBoardPanels: the wear and CPU panels draw, with a kind that
// has no figures (n/a) among them.
func TestChartBoardPanels(t *testing.T) {
	res := &results{v: map[string]map[string][]float64{}, na: map[string]string{kEdgegwDisk: "n/a (key unknown)"}}
	res.add(0, kEdgegwDflt, figures{"wear.up.20": 171, "cpu.200": 405}, append(wearMetrics, cpuMetrics...))
	res.add(0, kMosq, figures{"wear.up.20": 0, "cpu.200": 100}, append(wearMetrics, cpuMetrics...))
	res.add(0, kMosqAuto, figures{"wear.up.20": 369}, wearMetrics)
	path := filepath.Join(t.TempDir(), "c.png")
	if err := writeChart(path, res); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if cfg.Width == 0 || cfg.Height == 0 {
		t.Fatalf("empty chart %dx%d", cfg.Width, cfg.Height)
	}
}
