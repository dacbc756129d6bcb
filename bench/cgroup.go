package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cpuCap is a cgroup that limits its processes to a share of one core,
// as on a Pi Zero: cgroup v2 (cpu.max) where the cpu controller is on the
// unified hierarchy, else cgroup v1 (cpu.cfs_quota_us / cpu.cfs_period_us).
type cpuCap struct {
	dir     string
	version int
}

// cgroupPeriod is the CFS period: the quota is enforced per 100 ms.
const cgroupPeriod = 100_000

// newCPUCap creates a cgroup named name capped to percent of one core.
func newCPUCap(name string, percent int) (*cpuCap, error) {
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, fmt.Errorf("bench: cgroup: %w", err)
	}
	version, root, err := cpuControllerMount(string(mounts), func(p string) ([]byte, error) { return os.ReadFile(p) })
	if err != nil {
		return nil, err
	}
	c := &cpuCap{dir: filepath.Join(root, name), version: version}
	if err := os.Mkdir(c.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("bench: cgroup: %w", err)
	}
	quota := percent * cgroupPeriod / 100
	switch version {
	case 2:
		// The parent must hand the cpu controller down; it may already.
		_ = os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+cpu"), 0)
		err = os.WriteFile(filepath.Join(c.dir, "cpu.max"), fmt.Appendf(nil, "%d %d", quota, cgroupPeriod), 0)
	default:
		err = os.WriteFile(filepath.Join(c.dir, "cpu.cfs_period_us"), []byte(strconv.Itoa(cgroupPeriod)), 0)
		if err == nil {
			err = os.WriteFile(filepath.Join(c.dir, "cpu.cfs_quota_us"), []byte(strconv.Itoa(quota)), 0)
		}
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("bench: cgroup v%d quota in %s: %w", version, c.dir, err)
	}
	return c, nil
}

// cpuControllerMount finds where the cpu controller is mounted: the
// unified hierarchy if its cgroup.controllers lists cpu, else the v1
// hierarchy whose mount options name cpu.
func cpuControllerMount(mounts string, read func(string) ([]byte, error)) (version int, root string, err error) {
	var v1 string
	sc := bufio.NewScanner(strings.NewReader(mounts))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		switch f[2] {
		case "cgroup2":
			if b, err := read(filepath.Join(f[1], "cgroup.controllers")); err == nil && hasWord(string(b), "cpu") {
				return 2, f[1], nil
			}
		case "cgroup":
			if v1 == "" && hasWord(strings.ReplaceAll(f[3], ",", " "), "cpu") {
				v1 = f[1]
			}
		}
	}
	if v1 != "" {
		return 1, v1, nil
	}
	return 0, "", errors.New("bench: no cgroup hierarchy with the cpu controller is mounted (want cgroup2 with cpu in cgroup.controllers, or cgroup v1 -o cpu)")
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// add moves process pid (every thread) into the cgroup.
func (c *cpuCap) add(pid int) error {
	if err := os.WriteFile(filepath.Join(c.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("bench: cgroup: moving %d into %s: %w", pid, c.dir, err)
	}
	return nil
}

// close removes the cgroup once its processes have gone (bounded).
func (c *cpuCap) close() {
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := os.Remove(c.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
	}
	fmt.Fprintf(os.Stderr, "bench: cgroup %s still busy; left in place\n", c.dir)
}

// pin sets the CPU affinity of every thread of pid to cpus (threads made
// later inherit it from their parent thread).
func pin(pid int, cpus ...int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return fmt.Errorf("bench: pin %d: %w", pid, err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("bench: pin thread %d of %d to %v: %w", tid, pid, cpus, err)
		}
	}
	return nil
}

// allCPUs is 0..n-1 for this machine.
func allCPUs(n int) []int {
	c := make([]int, n)
	for i := range c {
		c[i] = i
	}
	return c
}
